package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	kruise "github.com/openkruise/kruise-api/apps/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// manifests are the objects of one multi-document YAML file.
type manifests struct {
	configMaps  []corev1.ConfigMap
	pods        []corev1.Pod
	deployments []appsv1.Deployment
	sidecarSets []kruise.SidecarSet
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// decodeStrict decodes every document of path into its upstream type,
// refusing unknown fields, duplicate keys and unknown kinds.
func decodeStrict(data []byte) (manifests, error) {
	var m manifests
	for i, doc := range docSep.Split(string(data), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return m, fmt.Errorf("document %d: %w", i+1, err)
		}
		var err error
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 ConfigMap":
			err = decodeInto(doc, &m.configMaps)
		case "v1 Pod":
			err = decodeInto(doc, &m.pods)
		case "apps/v1 Deployment":
			err = decodeInto(doc, &m.deployments)
		case "apps.kruise.io/v1alpha1 SidecarSet":
			err = decodeInto(doc, &m.sidecarSets)
		default:
			err = fmt.Errorf("unexpected kind %q %q", tm.APIVersion, tm.Kind)
		}
		if err != nil {
			return m, fmt.Errorf("document %d (%s): %w", i+1, tm.Kind, err)
		}
	}
	return m, nil
}

// decodeInto decodes doc strictly as a T and appends it to list.
func decodeInto[T any](doc string, list *[]T) error {
	var o T
	if err := yaml.UnmarshalStrict([]byte(doc), &o); err != nil {
		return err
	}
	*list = append(*list, o)
	return nil
}

func load(t *testing.T, name string) manifests {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("kubernetes", name))
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeStrict(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

func TestStrictDecodingRefusesMistakes(t *testing.T) {
	for _, bad := range []string{
		"apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: a\n    imagePullPolicy: Always\n    lifecycle:\n      preStop:\n        slep: {seconds: 5}\n",
		"apiVersion: apps.kruise.io/v1alpha1\nkind: SidecarSet\nspec:\n  containers:\n  - name: a\n    upgradeStrategy:\n      upgradeTyp: HotUpgrade\n",
		"apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  name: b\n",
		"apiVersion: v1\nkind: Pood\n",
	} {
		if _, err := decodeStrict([]byte(bad)); err == nil {
			t.Errorf("decoded without error:\n%s", bad)
		}
	}
}

// mosnConfig is the part of a mosnlite config the manifests must agree with.
type mosnConfig struct {
	UDSDir  string `json:"uds_dir"`
	Servers []struct {
		Graceful string `json:"graceful_timeout"`
	} `json:"servers"`
	Admin struct {
		Address string `json:"address"`
	} `json:"admin"`
}

// checkConfig validates the ConfigMap's config with the real binary and returns it.
func checkConfig(t *testing.T, cms []corev1.ConfigMap, name string) mosnConfig {
	t.Helper()
	var data string
	for _, cm := range cms {
		if cm.Name == name {
			data = cm.Data["mosn.json"]
		}
	}
	if data == "" {
		t.Fatalf("no ConfigMap %q with mosn.json", name)
	}
	p := filepath.Join(t.TempDir(), "mosn.json")
	os.WriteFile(p, []byte(data), 0o644)
	if out, err := exec.Command(mosnlite(t), "validate", "-c", p).CombinedOutput(); err != nil {
		t.Fatalf("mosnlite validate of ConfigMap %s: %v\n%s", name, err, out)
	}
	var c mosnConfig
	if err := json.Unmarshal([]byte(data), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// mosnlite builds the binary of the parent module once per test binary.
var builtBinary string

func mosnlite(t *testing.T) string {
	t.Helper()
	if builtBinary != "" {
		return builtBinary
	}
	dir, err := os.MkdirTemp("", "mosnlite-deploy-test")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "mosnlite")
	if out, err := exec.Command("go", "build", "-C", "..", "-o", bin, "./cmd/mosnlite").CombinedOutput(); err != nil {
		t.Fatalf("build mosnlite: %v\n%s", err, out)
	}
	builtBinary = bin
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBinary != "" {
		os.RemoveAll(filepath.Dir(builtBinary))
	}
	os.Exit(code)
}

// checkSlot checks one mosnlite container against the config: the uds_dir
// lies inside the emptyDir it mounts, /ready is probed on the admin port,
// and the container's command is left to the image (only the image of a
// running pod's container may change).
func checkSlot(t *testing.T, c corev1.Container, cfg mosnConfig, volumes []corev1.Volume) {
	t.Helper()
	if len(c.Command) != 0 || len(c.Args) != 0 {
		t.Errorf("%s: sets command/args %q %q; both slots must run the image's entrypoint", c.Name, c.Command, c.Args)
	}
	byName := map[string]corev1.Volume{}
	for _, v := range volumes {
		byName[v.Name] = v
	}
	var writable []string
	for _, vm := range c.VolumeMounts {
		v, ok := byName[vm.Name]
		if !ok {
			t.Errorf("%s: mounts unknown volume %q", c.Name, vm.Name)
			continue
		}
		if vm.ReadOnly {
			continue
		}
		writable = append(writable, vm.Name)
		if v.EmptyDir == nil {
			t.Errorf("%s: writable volume %q is not an emptyDir", c.Name, vm.Name)
		}
		// Strictly inside: the emptyDir's root belongs to root; mosnlite
		// creates the uds_dir below it, 0700 and its own.
		if !strings.HasPrefix(cfg.UDSDir, strings.TrimSuffix(vm.MountPath, "/")+"/") {
			t.Errorf("%s: uds_dir %q is not a directory inside the emptyDir mounted at %s", c.Name, cfg.UDSDir, vm.MountPath)
		}
	}
	if len(writable) != 1 {
		t.Errorf("%s: shares writable volumes %q; want the uds_dir's emptyDir alone", c.Name, writable)
	}
	_, adminPort, _ := strings.Cut(cfg.Admin.Address, ":")
	if !strings.HasPrefix(cfg.Admin.Address, "0.0.0.0:") {
		t.Errorf("admin listens on %s: the kubelet probes the pod's IP", cfg.Admin.Address)
	}
	rp := c.ReadinessProbe
	if rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/ready" || rp.HTTPGet.Port.String() != adminPort {
		t.Errorf("%s: readiness probe %+v, want GET /ready on admin port %s", c.Name, rp, adminPort)
	}
	if c.Lifecycle == nil || c.Lifecycle.PostStart == nil || c.Lifecycle.PostStart.Exec == nil {
		t.Errorf("%s: no postStart exec hook: Kruise's hot upgrade waits on it", c.Name)
	} else {
		checkAwait(t, c.Name, c.Lifecycle.PostStart.Exec.Command, c.VolumeMounts)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Errorf("%s: no preStop sleep", c.Name)
	}
}

// checkAwait runs the postStart hook's command with the binary built here:
// it must be `mosnlite await` on the config the container mounts, and a
// standby slot's hook must return at once (exit 0).
func checkAwait(t *testing.T, name string, cmd []string, mounts []corev1.VolumeMount) {
	t.Helper()
	if len(cmd) < 4 || filepath.Base(cmd[0]) != "mosnlite" || cmd[1] != "await" || cmd[2] != "-c" {
		t.Errorf("%s: postStart %q, want mosnlite await -c CONFIG", name, cmd)
		return
	}
	mounted := false
	for _, vm := range mounts {
		if strings.HasPrefix(cmd[3], strings.TrimSuffix(vm.MountPath, "/")+"/") {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("%s: postStart reads %s, which no volume of the container holds", name, cmd[3])
	}
	// The flags as written, against a config of our own, in a standby slot.
	args := append([]string{}, cmd[1:]...)
	args[2] = filepath.Join(t.TempDir(), "mosn.json")
	os.WriteFile(args[2], []byte(`{"servers": [{"listeners": []}]}`), 0o644)
	c := exec.Command(mosnlite(t), args...)
	c.Env = append(os.Environ(), "SIDECARSET_VERSION=0", "SIDECARSET_VERSION_ALT=1")
	if out, err := c.CombinedOutput(); err != nil || !strings.Contains(string(out), "standby slot") {
		t.Errorf("%s: postStart %q in a standby slot: %v\n%s", name, cmd, err, out)
	}
}

// checkGrace: preStop, then the drain of graceful_timeout, within the grace period.
func checkGrace(t *testing.T, what string, grace *int64, c corev1.Container, cfg mosnConfig) {
	t.Helper()
	graceful, err := time.ParseDuration(cfg.Servers[0].Graceful)
	if err != nil {
		t.Fatalf("graceful_timeout %q", cfg.Servers[0].Graceful)
	}
	var pre time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		pre = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	if grace == nil {
		t.Fatalf("%s: no terminationGracePeriodSeconds", what)
	}
	if have, need := time.Duration(*grace)*time.Second, pre+graceful+3*time.Second; have < need {
		t.Errorf("%s: terminationGracePeriodSeconds %s < preStop %s + graceful_timeout %s + 3s", what, have, pre, graceful)
	}
}

func TestPodExample(t *testing.T) {
	m := load(t, "pod.yaml")
	if len(m.pods) != 1 {
		t.Fatalf("%d pods", len(m.pods))
	}
	pod := m.pods[0]
	var slots []corev1.Container
	for _, c := range pod.Spec.Containers {
		if strings.HasPrefix(c.Name, "mosnlite-") {
			slots = append(slots, c)
		}
	}
	if len(slots) != 2 || slots[0].Name != "mosnlite-1" || slots[1].Name != "mosnlite-2" {
		t.Fatalf("want the two slots mosnlite-1 and mosnlite-2, got %d", len(slots))
	}
	cfgName := ""
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap != nil {
			cfgName = v.ConfigMap.Name
		}
	}
	cfg := checkConfig(t, m.configMaps, cfgName)
	serving := 0
	for _, c := range slots {
		checkSlot(t, c, cfg, pod.Spec.Volumes)
		checkGrace(t, "pod", pod.Spec.TerminationGracePeriodSeconds, c, cfg)
		// The slot's version comes from its own annotation, as Kruise sets it.
		// Kruise's annotation keys (pkg/control/sidecarcontrol).
		for _, want := range []string{"version", "versionalt"} {
			key := want + ".sidecarset.kruise.io/" + c.Name
			envName := map[string]string{"version": "SIDECARSET_VERSION", "versionalt": "SIDECARSET_VERSION_ALT"}[want]
			found := false
			for _, e := range c.Env {
				if e.Name == envName && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil &&
					e.ValueFrom.FieldRef.FieldPath == "metadata.annotations['"+key+"']" {
					found = true
				}
			}
			if _, ok := pod.Annotations[key]; !ok || !found {
				t.Errorf("%s: %s not taken from annotation %s", c.Name, envName, key)
			}
		}
		if pod.Annotations["version.sidecarset.kruise.io/"+c.Name] != "0" {
			serving++
		}
		if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
			t.Errorf("%s: its own runAsUser; both slots must share the pod's", c.Name)
		}
	}
	if serving != 1 {
		t.Errorf("%d slots have a non-zero version; exactly one serves", serving)
	}
	if sc := pod.Spec.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Error("pod security context: want one non-root runAsUser for both slots")
	}
}

func TestSidecarSetExample(t *testing.T) {
	m := load(t, "sidecarset.yaml")
	if len(m.sidecarSets) != 1 || len(m.deployments) != 1 {
		t.Fatalf("%d SidecarSets, %d Deployments", len(m.sidecarSets), len(m.deployments))
	}
	ss, dep := m.sidecarSets[0], m.deployments[0]
	if len(ss.Spec.Containers) != 1 {
		t.Fatalf("%d sidecar containers", len(ss.Spec.Containers))
	}
	sc := ss.Spec.Containers[0]
	us := sc.UpgradeStrategy
	if us.UpgradeType != kruise.SidecarContainerHotUpgrade || us.HotUpgradeEmptyImage == "" || us.HotUpgradeEmptyImage == sc.Image {
		t.Errorf("upgradeStrategy %+v: want HotUpgrade with an empty image distinct from %s", us, sc.Image)
	}
	cfgName := ""
	for _, v := range ss.Spec.Volumes {
		if v.ConfigMap != nil {
			cfgName = v.ConfigMap.Name
		}
	}
	cfg := checkConfig(t, m.configMaps, cfgName)
	checkSlot(t, sc.Container, cfg, ss.Spec.Volumes)
	checkGrace(t, "deployment", dep.Spec.Template.Spec.TerminationGracePeriodSeconds, sc.Container, cfg)
	if s := sc.SecurityContext; s == nil || s.RunAsUser == nil || *s.RunAsUser == 0 {
		t.Error("the sidecar needs a non-root runAsUser (both slots are injected from it, so they share it)")
	}
	sel, err := metav1.LabelSelectorAsSelector(ss.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Errorf("the SidecarSet's selector %s does not select the Deployment's pods %v", sel, dep.Spec.Template.Labels)
	}
	for _, ns := range []string{dep.Namespace, m.configMaps[0].Namespace} {
		if ns != ss.Spec.Namespace {
			t.Errorf("namespace %q; the SidecarSet injects into %q", ns, ss.Spec.Namespace)
		}
	}
}
