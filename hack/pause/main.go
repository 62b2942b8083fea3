// Command pause is the pod sandbox's first process on the test cluster's real node. There is no
// registry to pull registry.k8s.io/pause from, so hack/build-image.sh builds this and packs it
// into an image of its own. Like the upstream pause, it holds the pod's namespaces open, reaps
// the zombies of a shared PID namespace, and exits on SIGTERM or SIGINT.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
