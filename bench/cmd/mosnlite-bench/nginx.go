package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

const nginxInstallHint = "install it with: apt-get install -y nginx libnginx-mod-stream"

// nginxStream tells how this nginx gets its stream{} module.
type nginxStream struct {
	builtIn    bool   // compiled in: nothing to load
	modulePath string // dynamic: the .so to load_module
}

// findNginx locates the binary and its stream module.
func findNginx(flagPath string) (string, nginxStream, error) {
	bin := flagPath
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("nginx"); err != nil {
			if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
				return "", nginxStream{}, fmt.Errorf("nginx not found in PATH or /usr/sbin; %s", nginxInstallHint)
			}
			bin = "/usr/sbin/nginx"
		}
	}
	out, err := exec.Command(bin, "-V").CombinedOutput()
	if err != nil {
		return "", nginxStream{}, fmt.Errorf("nginx cannot run (%s -V: %v); %s\n%s", bin, err, nginxInstallHint, out)
	}
	st, err := streamModule(string(out), fileExists)
	if err != nil {
		return "", nginxStream{}, fmt.Errorf("%s: %w", bin, err)
	}
	return bin, st, nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// streamModule reads `nginx -V` output: --with-stream compiles the module in,
// --with-stream=dynamic builds it as a module to load from the modules path.
func streamModule(v string, exists func(string) bool) (nginxStream, error) {
	args := strings.Fields(v)
	dynamic, static := false, false
	modulesPath := ""
	for _, a := range args {
		switch {
		case a == "--with-stream":
			static = true
		case a == "--with-stream=dynamic":
			dynamic = true
		case strings.HasPrefix(a, "--modules-path="):
			modulesPath = strings.TrimPrefix(a, "--modules-path=")
		}
	}
	if static {
		return nginxStream{builtIn: true}, nil
	}
	if !dynamic {
		return nginxStream{}, fmt.Errorf("nginx was built without the stream module")
	}
	candidates := []string{"/usr/lib/nginx/modules/ngx_stream_module.so", "/usr/lib64/nginx/modules/ngx_stream_module.so"}
	if modulesPath != "" {
		candidates = append([]string{filepath.Join(modulesPath, "ngx_stream_module.so")}, candidates...)
	}
	for _, c := range candidates {
		if exists(c) {
			return nginxStream{modulePath: c}, nil
		}
	}
	return nginxStream{}, fmt.Errorf("stream module ngx_stream_module.so not found; %s", nginxInstallHint)
}

// nginxConf renders the config: HTTP proxy with upstream keep-alive to the
// backend, and a stream{} TCP proxy to the sink. Keep-alive request limits
// are lifted on both sides so that, as with mosnlite, a connection is never
// closed by a request count; each worker may hold every idle connection.
func nginxConf(st nginxStream, dir, httpAddr, httpsAddr, tcpAddr, backendHTTP, backendTCP string, cert benchCert, conns, idle int, h2 h2Ports) string {
	var b strings.Builder
	if st.modulePath != "" {
		fmt.Fprintf(&b, "load_module %s;\n", st.modulePath)
	}
	fmt.Fprintf(&b, `worker_processes auto;
worker_rlimit_nofile %[7]d;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events { worker_connections %[7]d; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    upstream backend {
        server %[4]s;
        keepalive %[6]d;
        keepalive_requests 100000000;
    }
    server {
        listen %[2]s;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
    }
    server {
        listen %[8]s ssl;
        ssl_certificate %[9]s;
        ssl_certificate_key %[10]s;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
    }
    upstream grpcbackend {
        server %[13]s;
        keepalive %[6]d;
    }
    server {
        listen %[11]s http2;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
    }
    server {
        listen %[12]s http2;
        location / {
            grpc_pass grpc://grpcbackend;
        }
    }
}
stream {
    upstream sink { server %[5]s; }
    server {
        listen %[3]s;
        proxy_pass sink;
    }
}
`, dir, httpAddr, tcpAddr, backendHTTP, backendTCP, conns, max(4096, idle+1024), httpsAddr, cert.certPath, cert.keyPath, h2.h2c, h2.grpc, h2.grpcBackend)
	return b.String()
}

// startNginx writes the config into dir and runs nginx in the foreground.
func startNginx(ctx context.Context, bin string, st nginxStream, dir, httpAddr, httpsAddr, tcpAddr string, b *backend, cert benchCert, conns, idle int, h2 h2Ports) (*proc, error) {
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConf(st, dir, httpAddr, httpsAddr, tcpAddr, b.httpAddr(), b.sinkAddr(), cert, conns, idle, h2)), 0o644); err != nil {
		return nil, fmt.Errorf("nginx: write config: %w", err)
	}
	if out, err := exec.Command(bin, "-t", "-q", "-p", dir, "-c", conf, "-g", "daemon off;").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nginx: config test failed: %v\n%s", err, out)
	}
	p, err := startProc("nginx", filepath.Join(dir, "nginx.log"), bin, "-p", dir, "-c", conf, "-g", "daemon off;")
	if err != nil {
		return nil, err
	}
	err = p.waitReady(ctx, 10*time.Second, func() error {
		for _, a := range []string{httpAddr, httpsAddr} {
			if err := dialable(a); err != nil {
				return err
			}
		}
		return dialable(tcpAddr)
	})
	if err != nil {
		p.stop(syscall.SIGTERM, 5*time.Second)
		return nil, fmt.Errorf("nginx: %w\nerror log:\n%s", err, tailFile(filepath.Join(dir, "nginx-error.log"), 20))
	}
	return p, nil
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// nginxVersion is "nginx/1.22.1" from `nginx -v`, or "" if unknown.
func nginxVersion(bin string) string {
	out, _ := exec.Command(bin, "-v").CombinedOutput()
	return regexp.MustCompile(`nginx/\S+`).FindString(string(out))
}
