package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the .want files of testdata/mosn from what Parse says")

// TestMOSNCorpus parses every config of testdata/mosn — our own configs in
// MOSN's shape — and compares what Parse says with NAME.want: "ok" and the
// warnings, or "error" and every problem, exactly. Names start with ok_ or
// err_ to say which is expected.
func TestMOSNCorpus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "mosn", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 30 {
		t.Fatalf("the corpus has %d configs, want at least 30", len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			got := describeLoad(file)
			wantFile := strings.TrimSuffix(file, ".json") + ".want"
			if *update {
				if err := os.WriteFile(wantFile, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatalf("%v (run go test ./config -run TestMOSNCorpus -update, then read every line)", err)
			}
			if got != string(want) {
				t.Errorf("Parse says:\n%s\nwant (%s):\n%s", got, wantFile, want)
			}
			if wantOK := strings.HasPrefix(name, "ok_"); wantOK != strings.HasPrefix(got, "ok\n") {
				t.Errorf("%s: the name says ok=%v, Parse says:\n%s", name, wantOK, got)
			}
		})
	}
}

// describeLoad is "ok" and the warnings, or "error" and the problems, one a line.
func describeLoad(file string) string {
	c, err := Load(file)
	var b strings.Builder
	if err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) {
			return "error\n" + err.Error() + "\n"
		}
		b.WriteString("error\n")
		for _, p := range ve.Problems {
			b.WriteString(p.String() + "\n")
		}
		return b.String()
	}
	b.WriteString("ok\n")
	for _, w := range c.Warnings {
		b.WriteString("warning: " + w.String() + "\n")
	}
	return b.String()
}
