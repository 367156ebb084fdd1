package wire

// Split cuts a list of n items (series of counters, say) into consecutive
// runs whose encodings fit in limit bytes, for a message too large for one
// frame: encode(lo, hi, more) encodes items [lo, hi) with the message's
// "more parts follow" flag. A run that does not fit is halved until it
// does; an item that fits no frame on its own is left out, its index in
// dropped. Every part but the last has more set; the last has last. With no
// items, the one part is encode(0, 0, last).
func Split(n, limit int, last bool, encode func(lo, hi int, more bool) ([]byte, error)) (parts [][]byte, dropped []int) {
	var lastRun [2]int
	var cut func(lo, hi int)
	cut = func(lo, hi int) {
		// Measured with more set, the larger encoding: the last part only
		// shrinks when it is encoded again below.
		p, err := encode(lo, hi, true)
		if err == nil && len(p) <= limit {
			parts = append(parts, p)
			lastRun = [2]int{lo, hi}
			return
		}
		if hi-lo <= 1 {
			if hi > lo {
				dropped = append(dropped, lo)
			}
			return
		}
		mid := lo + (hi-lo)/2
		cut(lo, mid)
		cut(mid, hi)
	}
	cut(0, n)
	if k := len(parts); k > 0 && !last {
		if p, err := encode(lastRun[0], lastRun[1], false); err == nil {
			parts[k-1] = p
		}
	}
	return parts, dropped
}
