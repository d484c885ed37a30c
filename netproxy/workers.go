package netproxy

import "time"

// defaultWorkerIdle is how long an idle worker goroutine waits for the
// next task before it exits.
const defaultWorkerIdle = 10 * time.Second

// spawn runs f on an idle worker goroutine, or on a new one when none is
// idle. Connection handling runs on these workers rather than on a fresh
// goroutine each time: a fresh goroutine starts with a small stack and
// grows it (by copying) in the dial path on every connection, which cost
// about 5 % of the CPU of connection-per-request traffic; a worker keeps
// its grown stack. Workers exit after being idle for a while, and when the
// proxy stops (after finishing their task), so the pool follows the load
// and nothing is left behind.
func (p *Proxy) spawn(f func()) {
	select {
	case p.work <- f:
	default:
		p.wg.Add(1)
		go p.worker(f)
	}
}

func (p *Proxy) worker(f func()) {
	defer p.wg.Done()
	idle := time.NewTimer(p.workerIdle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(p.workerIdle)
		select {
		case f = <-p.work:
		case <-idle.C:
			return
		case <-p.ctx.Done():
			return
		}
	}
}
