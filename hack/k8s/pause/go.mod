// The pause binary of the local sandbox image (scripts/k8s install --node).
module canal-operator/hack/k8s/pause

go 1.26.0
