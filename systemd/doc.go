// Package systemd holds cuelet's systemd unit and tmpfiles.d entry, and
// tests that they say what SPEC §5 promises and that systemd accepts them.
package systemd
