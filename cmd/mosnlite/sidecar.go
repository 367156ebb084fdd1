package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// A Kubernetes pod upgrades mosnlite in place with two containers ("slots")
// that share the uds_dir: OpenKruise's SidecarSet hot upgrade. Kruise tells
// each slot its version in SIDECARSET_VERSION, and the other slot's in
// SIDECARSET_VERSION_ALT (from the pod's annotations; versions grow with
// each upgrade; "0" is the slot that holds the hot-upgrade empty image).

// Environment of a SidecarSet hot-upgrade slot, and mosnlite's own name for
// a process.
const (
	sidecarVersionEnv    = "SIDECARSET_VERSION"
	sidecarVersionAltEnv = "SIDECARSET_VERSION_ALT"
	instanceEnv          = "MOSNLITE_INSTANCE"
)

// standbyReason says why this slot must not serve, or "": it holds the
// empty image (version 0), or it is the older of the two (kubelet restarted
// the old slot after the new one took over, before Kruise reset it). Then
// `mosnlite start` stands by instead of taking over from the newer slot.
func standbyReason(getenv func(string) string) string {
	v, alt := getenv(sidecarVersionEnv), getenv(sidecarVersionAltEnv)
	switch {
	case v == "":
		return ""
	case v == "0":
		return sidecarVersionEnv + "=0: this slot holds the hot-upgrade empty image"
	case alt == "" || alt == "0":
		return ""
	}
	vn, err1 := strconv.ParseUint(v, 10, 64)
	an, err2 := strconv.ParseUint(alt, 10, 64)
	if err1 == nil && err2 == nil && vn < an {
		return fmt.Sprintf("%s=%s is older than the other slot's %s=%s: that slot serves", sidecarVersionEnv, v, sidecarVersionAltEnv, alt)
	}
	return ""
}

// instanceName is how /server_info names this process ("instance"), so that
// `mosnlite await` in the same container recognises it among the processes
// of other containers: MOSNLITE_INSTANCE, else the slot's SidecarSet version.
func instanceName(getenv func(string) string) string {
	if v := getenv(instanceEnv); v != "" {
		return v
	}
	if v := getenv(sidecarVersionEnv); v != "" {
		return "sidecarset-version-" + v
	}
	return ""
}

// standBy is a standby slot's whole life: it serves nothing and waits to be
// stopped (Kruise replaces its image to upgrade, or resets it).
func standBy(why string, stderr io.Writer) int {
	fmt.Fprintf(stderr, "mosnlite: standing by, serving nothing: %s\n", why)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	sig := <-sigs
	fmt.Fprintf(stderr, "mosnlite: standby stopped by %s\n", sig)
	return 0
}

// awaitInterval is how often `mosnlite await` asks.
const awaitInterval = 100 * time.Millisecond

// cmdAwait is `mosnlite await -c FILE`: it returns once the process of this
// container serves (its instance name is ours and its state running), at
// once in a standby slot: a SidecarSet slot's postStart hook, which Kruise
// waits on before it resets the old slot. Exit 0, or 1 with what it saw.
func cmdAwait(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("await", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "", "config file (its admin address is asked)")
	timeout := fs.Duration("timeout", 60*time.Second, "how long to wait")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" || fs.NArg() > 0 || *timeout <= 0 {
		fmt.Fprintln(stderr, "usage: mosnlite await -c FILE [--timeout 60s]")
		return 2
	}
	if why := standbyReason(os.Getenv); why != "" {
		fmt.Fprintf(stdout, "mosnlite await: standby slot (%s): nothing to wait for\n", why)
		return 0
	}
	cfg, _, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintf(stderr, "mosnlite await: %v\n", err)
		return 1
	}
	if cfg.Admin == nil || cfg.Admin.Address == "" {
		fmt.Fprintf(stderr, "mosnlite await: %s has no admin port to ask\n", *path)
		return 1
	}
	c, base, err := adminClient(cfg.Admin.Network, cfg.Admin.Address)
	if err != nil {
		fmt.Fprintf(stderr, "mosnlite await: admin %s: %v\n", cfg.Admin.Address, err)
		return 1
	}
	want := instanceName(os.Getenv)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	last := "no answer yet"
	for {
		var info struct {
			PID        int    `json:"pid"`
			State      string `json:"state"`
			Generation int    `json:"generation"`
			Instance   string `json:"instance"`
		}
		err := getJSON(ctx, c, base+"/server_info", &info)
		switch {
		case err != nil:
			last = err.Error()
		case info.Instance != want:
			last = fmt.Sprintf("pid %d (instance %q, generation %d) serves, not this container's (instance %q)", info.PID, info.Instance, info.Generation, want)
		case info.State != "running":
			last = fmt.Sprintf("this container's process (pid %d) is %s", info.PID, info.State)
		default:
			fmt.Fprintf(stdout, "mosnlite await: pid %d (generation %d, instance %q) serves\n", info.PID, info.Generation, info.Instance)
			return 0
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(stderr, "mosnlite await: not serving after %s: %s\n", *timeout, last)
			return 1
		case <-time.After(awaitInterval):
		}
	}
}

// adminClient is an HTTP client for the admin port as the config gives it
// (a wildcard address is asked on loopback) and the URL base to ask.
func adminClient(network, address string) (*http.Client, string, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	c := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	if network == "unix" {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", address)
		}
		return c, "http://admin", nil
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, "", err
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if err == nil && ip.Is6() {
			host = "::1"
		}
	}
	return c, "http://" + net.JoinHostPort(host, port), nil
}

func getJSON(ctx context.Context, c *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}
