package http1

import "testing"

// Heads as real peers send them, for the benchmarks and the equivalence test.
var (
	// curl 8 and wrk: a small GET.
	benchCurl = "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
	// The ~6 fields the profile was taken with.
	benchSix = "GET /api/v1/items?id=42 HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n" +
		"Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\nCookie: session=8f2a6c1e; theme=dark\r\n\r\n"
	// A browser navigation: 15 fields, long values.
	benchBrowser = "GET /products/shoes?color=blue&size=42 HTTP/1.1\r\n" +
		"Host: shop.example.com\r\n" +
		"Connection: keep-alive\r\n" +
		"sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n" +
		"sec-ch-ua-mobile: ?0\r\n" +
		"sec-ch-ua-platform: \"Linux\"\r\n" +
		"Upgrade-Insecure-Requests: 1\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8\r\n" +
		"Sec-Fetch-Site: same-origin\r\n" +
		"Sec-Fetch-Mode: navigate\r\n" +
		"Sec-Fetch-User: ?1\r\n" +
		"Sec-Fetch-Dest: document\r\n" +
		"Referer: https://shop.example.com/products\r\n" +
		"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
		"Accept-Language: en-GB,en-US;q=0.9,en;q=0.8\r\n" +
		"Cookie: _ga=GA1.1.123456789.1700000000; session=6b1d0c7e2f3a4b5c; cart=3\r\n\r\n"
	// What a Go net/http backend answers a small GET with.
	benchGoResponse = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Date: Tue, 01 Dec 2026 20:00:00 GMT\r\n\r\n"
	// nginx, keep-alive, chunked.
	benchNginxResponse = "HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Tue, 01 Dec 2026 20:00:00 GMT\r\n" +
		"Content-Type: text/html\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
)

func loop(b *testing.B, raw []byte, parse func() error) {
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if err := parse(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHead measures what the proxy does per message: find the end of
// the head, then parse it. "ref" is the parser before the single-pass
// rewrite (ref_test.go), so one run compares the two side by side.
func BenchmarkHead(b *testing.B) {
	reqs := []struct{ name, raw string }{{"curl", benchCurl}, {"six", benchSix}, {"browser", benchBrowser}}
	resps := []struct{ name, raw string }{{"goresp", benchGoResponse}, {"nginxresp", benchNginxResponse}}
	for _, tc := range reqs {
		raw := []byte(tc.raw)
		b.Run(tc.name+"/new", func(b *testing.B) {
			var r Request
			loop(b, raw, func() error {
				end, _ := HeadEnd(raw, 0)
				return ParseRequest(raw[:end], &r, 100)
			})
		})
		b.Run(tc.name+"/ref", func(b *testing.B) {
			var r refRequest
			loop(b, raw, func() error {
				end, _ := refHeadEnd(raw, 0)
				return refParseRequest(raw[:end], &r, 100)
			})
		})
	}
	for _, tc := range resps {
		raw := []byte(tc.raw)
		b.Run(tc.name+"/new", func(b *testing.B) {
			var r Response
			loop(b, raw, func() error {
				end, _ := HeadEnd(raw, 0)
				return ParseResponse(raw[:end], &r, 100)
			})
		})
		b.Run(tc.name+"/ref", func(b *testing.B) {
			var r refResponse
			loop(b, raw, func() error {
				end, _ := refHeadEnd(raw, 0)
				return refParseResponse(raw[:end], &r, 100)
			})
		})
	}
}

// BenchmarkHeadEnd is the part of BenchmarkHead that finding the end takes
// (the same code in both parsers).
func BenchmarkHeadEnd(b *testing.B) {
	for _, tc := range []struct{ name, raw string }{{"curl", benchCurl}, {"six", benchSix}, {"browser", benchBrowser},
		{"goresp", benchGoResponse}, {"nginxresp", benchNginxResponse}} {
		raw := []byte(tc.raw)
		b.Run(tc.name, func(b *testing.B) {
			loop(b, raw, func() error {
				if end, _ := HeadEnd(raw, 0); end != len(raw) {
					b.Fatalf("end %d of %d", end, len(raw))
				}
				return nil
			})
		})
	}
}
