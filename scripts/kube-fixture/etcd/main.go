// Command etcd is the etcd server at the version Kubernetes v1.34.4 itself depends on, so the
// fixture's etcd and kube-apiserver's etcd client always agree on the protocol.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
