// Package netproxy keeps services reachable on the node: the userspace
// proxy (the first kube-proxy's design) that relays every service port's
// portal and external port round robin to its ready endpoints, and the node
// programming (a link, a local route, an nftables table) that keeps portal
// addresses local. How and why: docs/design.md; the data path's figures:
// docs/performance.md.
package netproxy
