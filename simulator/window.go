package simulator

// window is a sliding-window log of arrival times (Unix nanoseconds,
// oldest first): exact, at the cost of one entry per call in the window.
type window struct {
	times []int64
	head  int
}

// arrive records an arrival at now and returns how many arrivals,
// this one included, lie in (now-per, now].
func (w *window) arrive(now, per int64) int {
	cut := now - per
	for w.head < len(w.times) && w.times[w.head] <= cut {
		w.head++
	}
	if w.head > 1024 && w.head > len(w.times)/2 {
		w.times = append(w.times[:0], w.times[w.head:]...)
		w.head = 0
	}
	w.times = append(w.times, now)
	return len(w.times) - w.head
}
