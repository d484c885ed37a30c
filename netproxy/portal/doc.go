// Package portal hands out portal IPs (the stable virtual address of a
// service) from the portal range and keeps them stable across agent
// restarts and service edits (SPEC §3.12).
//
// [Plan] is the pure decision: given the range, the previous allocations
// and the desired services (each with a fixed address or none), it returns
// the new allocations and a per-service error for the ones that cannot get
// an address. [Allocator] wraps Plan with a JSON state file written
// atomically, so that allocations survive restarts.
//
// The rules, in order:
//
//   - Every address of the range except its network and broadcast address
//     and the reserved ones (the DNS server's, SPEC §10) can be allocated
//     (for a /31 or /32, every address). A service holding an address that
//     became reserved gets another one.
//   - A service keeps the address it holds as long as it stays in the desired
//     set and asks for no other fixed address. A service that asks for a
//     different fixed address releases its old one in the same pass, so that
//     two services can swap addresses in one edit.
//   - A fixed address must lie inside the range and must not be held by
//     another service; when several new services ask for the same free
//     address, none of them gets it (no winner by name order).
//   - Other services get the lowest free address, first from the upper part
//     of the range and then from the lowest addresses, which are left for
//     fixed addresses as long as possible (the way Kubernetes splits its
//     service range since KEP-3070). Addresses that any service asks for
//     are never handed out dynamically. Services are served in name order,
//     so the result is deterministic.
//   - A service that is no longer desired frees its address.
package portal
