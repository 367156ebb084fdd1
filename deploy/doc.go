// Package deploy holds the tests of the deployment files beside it: the
// Kubernetes manifests are decoded strictly into the upstream API types.
//
// It is a module of its own so that the Kubernetes and OpenKruise API
// modules, which only these tests need, never enter the dependency graph of
// the mosnlite binary (in one module, their requirements would raise the
// versions of modules the binary links, such as reflect2). Run it with
// `cd deploy && go test ./...`; .ci/run does.
package deploy
