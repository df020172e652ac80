// Command cricleanup stops and removes every pod sandbox (and so every container) a CRI runtime
// holds, the way the kubelet would when the pods are deleted: the runtime tears down each
// sandbox's network (CNI DEL, its network namespace) and mounts. The cluster's teardown runs it
// after the kubelet stopped, so that nothing of the pods outlives the cluster.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	endpoint := flag.String("endpoint", "", "the CRI runtime's unix socket")
	flag.Parse()
	if *endpoint == "" {
		fmt.Fprintln(os.Stderr, "usage: cricleanup -endpoint SOCKET")
		os.Exit(2)
	}
	if err := cleanup(*endpoint); err != nil {
		fmt.Fprintln(os.Stderr, "cricleanup:", err)
		os.Exit(1)
	}
}

func cleanup(endpoint string) error {
	conn, err := grpc.NewClient("unix://"+endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("connect %s: %w", endpoint, err)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	sandboxes, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("list pod sandboxes: %w", err)
	}
	var failed []error
	for _, sb := range sandboxes.Items {
		name := sb.Metadata.Namespace + "/" + sb.Metadata.Name
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			failed = append(failed, fmt.Errorf("stop pod sandbox %s: %w", name, err))
			continue
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			failed = append(failed, fmt.Errorf("remove pod sandbox %s: %w", name, err))
		}
	}
	// Containers whose sandbox is already gone.
	containers, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	for _, c := range containers.Containers {
		if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.Id}); err != nil {
			failed = append(failed, fmt.Errorf("remove container %s: %w", c.Metadata.Name, err))
		}
	}
	fmt.Printf("cricleanup: removed %d pod sandboxes, %d containers\n", len(sandboxes.Items), len(containers.Containers))
	if len(failed) > 0 {
		return fmt.Errorf("%d of the removals failed, first: %w", len(failed), failed[0])
	}
	return nil
}
