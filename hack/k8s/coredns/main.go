// CoreDNS built from github.com/coredns/coredns with only the plugins the
// single-node cluster of scripts/cluster uses (cluster DNS from the
// Kubernetes API; nothing is forwarded off the machine).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	"github.com/coredns/coredns/coremain"
)

// Only these directives, in CoreDNS's own order.
var directives = []string{
	"reload", "health", "ready", "errors", "log", "loadbalance", "cache", "loop", "kubernetes",
}

func main() {
	dnsserver.Directives = directives
	coremain.Run()
}
