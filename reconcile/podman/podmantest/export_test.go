package podmantest

// KillService kills the service with SIGKILL, as a crash would: unlike
// StopService, Close then finds a service that died on its own.
func (p *Podman) KillService() error {
	if err := p.cmd.Process.Kill(); err != nil {
		return err
	}
	<-p.exited
	return nil
}
