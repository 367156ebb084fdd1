package service

import (
	"net/http"
	"net/http/pprof"
	rpprof "runtime/pprof"
)

// NewPprofHandler returns net/http/pprof's handlers on a private mux under
// /debug/pprof/, the paths `go tool pprof` expects. "/" redirects there.
// (Importing net/http/pprof also registers on http.DefaultServeMux; mosnlite
// never serves that mux.)
func NewPprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // index, and any named profile by path
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	for _, p := range rpprof.Profiles() {
		mux.Handle("/debug/pprof/"+p.Name(), pprof.Handler(p.Name()))
	}
	mux.Handle("GET /{$}", http.RedirectHandler("/debug/pprof/", http.StatusFound))
	return mux
}
