package proxy

import "testing"

func TestNormalisePath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/admin/x", "/admin/x"},
		{"/%61dmin/x", "/admin/x"},
		{"/public/../admin/x", "/admin/x"},
		{"//admin/x", "/admin/x"},
		{"/a//b///c/", "/a/b/c/"},
		{"/a/./b/.", "/a/b/"},
		{"/a/b/..", "/a/"},
		{"/a/%2e%2e/b", "/b"},
		{"/a%2Fb/c", "/a%2Fb/c"},
		{"/a%252F", "/a%252F"},
		{"/a%zz", "/a%zz"},
		{"/a%2", "/a%2"},
		{"/a%20b", "/a b"},
		{"/a%3Fb%23c", "/a%3Fb%23c"},
		{"/", "/"},
		{"/..a/.b", "/..a/.b"},
		{"", ""},
		{"*", "*"},
	} {
		got, ok := normalisePath([]byte(tc.in))
		if !ok || string(got) != tc.want {
			t.Errorf("normalisePath(%q) = %q %v, want %q", tc.in, got, ok, tc.want)
		}
	}
	for _, in := range []string{"/..", "/a/../../b", "/%2e%2e/admin"} {
		if got, ok := normalisePath([]byte(in)); ok {
			t.Errorf("normalisePath(%q) = %q, want refused (above the root)", in, got)
		}
	}
	if got := string(appendEscapedPath(nil, []byte("/a b\x00é?q"))); got != "/a%20b%00%C3%A9?q" {
		t.Errorf("appendEscapedPath = %q", got)
	}
}
