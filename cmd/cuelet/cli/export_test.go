package cli

import "time"

// SetFetchTimeout makes the one-shot commands' fetch deadline d until the
// returned function restores it.
func SetFetchTimeout(d time.Duration) (restore func()) {
	old := fetchTimeout
	fetchTimeout = func(time.Duration) time.Duration { return d }
	return func() { fetchTimeout = old }
}
