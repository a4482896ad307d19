// etcd server built from the go.etcd.io/etcd/server/v3 module (the same main
// as upstream's etcd binary), for tests and the local demo: scripts/k8s.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
