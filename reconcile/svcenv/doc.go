// Package svcenv renders the Kubernetes-format service variables
// (REDIS_PRIMARY_SERVICE_HOST, REDIS_PRIMARY_PORT_6379_TCP, …) that every
// container gets, and writes them as a replica's services.env file.
//
// The format follows the kubelet's (pkg/kubelet/envvars) exactly, as SPEC
// §3.11 and §7 ask:
//
//	<NAME>_SERVICE_HOST=<portal>
//	<NAME>_SERVICE_PORT=<first port>
//	<NAME>_SERVICE_PORT_<PORTNAME>=<port>          for every named port
//	<NAME>_PORT=<proto>://<portal>:<first port>
//	<NAME>_PORT_<port>_<PROTO>=<proto>://<portal>:<port>   for every port
//	<NAME>_PORT_<port>_<PROTO>_PROTO=<proto>
//	<NAME>_PORT_<port>_<PROTO>_PORT=<port>
//	<NAME>_PORT_<port>_<PROTO>_ADDR=<portal>
//
// where <NAME> and <PORTNAME> are upper-cased with '-' replaced by '_',
// <proto> is "tcp" or "udp" and <PROTO> its upper-case form.
//
// Use [Lines] or [Map] for a container's environment and [WriteFile] for
// the env file. A service without a portal address (Host is the zero
// netip.Addr, for example because its allocation failed) has no variables,
// like a headless service in Kubernetes.
package svcenv
