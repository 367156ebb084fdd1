package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// runWrk runs wrk against url for d with conns connections and parses its
// report. closeEach sends Connection: close, so that every request takes a
// new connection.
func runWrk(ctx context.Context, wrk, url string, conns int, d time.Duration, closeEach bool) (httpResult, error) {
	threads := min(2, conns)
	secs := max(1, int(d.Round(time.Second)/time.Second))
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(secs) + "s", "--timeout", "5s", "--latency"}
	if closeEach {
		args = append(args, "-H", "Connection: close")
	}
	cmd := exec.CommandContext(ctx, wrk, append(args, url)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return httpResult{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	res, err := parseWrk(string(out))
	if err != nil {
		return httpResult{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	return res, nil
}

// parseWrk reads wrk's --latency report: Requests/sec, the 50% and 99% lines
// of the latency distribution, the request count and duration, socket errors
// and non-2xx/3xx answers.
func parseWrk(out string) (httpResult, error) {
	res := httpResult{Loader: "wrk"}
	var haveRPS, haveP99 bool
	var bad int64
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return res, fmt.Errorf("parse Requests/sec %q: %w", f[1], err)
			}
			res.ReqPerSec, haveRPS = v, true
		case len(f) == 2 && (f[0] == "50%" || f[0] == "99%"):
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return res, fmt.Errorf("parse latency %s: %w", f[0], err)
			}
			if f[0] == "50%" {
				res.P50 = d
			} else {
				res.P99, haveP99 = d, true
			}
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			// "1120154 requests in 10.10s, 125.22MB read"
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return res, fmt.Errorf("parse request count %q: %w", f[0], err)
			}
			d, err := parseWrkDuration(strings.TrimSuffix(f[3], ","))
			if err != nil {
				return res, fmt.Errorf("parse run time: %w", err)
			}
			res.Requests, res.Elapsed = n, d
		case len(f) > 2 && f[0] == "Socket" && f[1] == "errors:":
			// "Socket errors: connect 0, read 0, write 0, timeout 0"
			for i := 2; i+1 < len(f); i += 2 {
				n, err := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				if err != nil {
					return res, fmt.Errorf("parse socket errors %q: %w", f[i+1], err)
				}
				res.Errors += n
			}
		case len(f) == 5 && f[0] == "Non-2xx":
			// "Non-2xx or 3xx responses: 12"
			n, err := strconv.ParseInt(f[4], 10, 64)
			if err != nil {
				return res, fmt.Errorf("parse non-2xx count %q: %w", f[4], err)
			}
			bad = n
		}
	}
	if !haveRPS || !haveP99 {
		return res, fmt.Errorf("no Requests/sec or 99%% latency in the output (was --latency given?)")
	}
	res.Errors += bad
	res.Requests -= bad
	return res, nil
}

// parseWrkDuration reads wrk's time format: a number and us, ms, s, m or h.
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("duration %q: %w", s, err)
			}
			return time.Duration(v * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("duration %q: unknown unit", s)
}
