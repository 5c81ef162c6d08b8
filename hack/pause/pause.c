/*
 * The Pod sandbox's "pause" process for the node of hack/k8s-up.sh --node, built FROM scratch as
 * k8s.gcr.io/pause:3.2 (the kubelet 1.20 default --pod-infra-container-image), because no registry
 * is reachable to pull it. It holds the Pod's namespaces: it sleeps until SIGINT or SIGTERM, then
 * exits, and as PID 1 of the Pod's PID namespace (when shared) reaps orphaned children.
 * Build: gcc -static -O2 -o pause pause.c
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
  (void)sig;
  _exit(0);
}

static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction stop, child;
  memset(&stop, 0, sizeof stop);
  stop.sa_handler = on_stop;
  sigaction(SIGINT, &stop, NULL);
  sigaction(SIGTERM, &stop, NULL);
  memset(&child, 0, sizeof child);
  child.sa_handler = on_child;
  child.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  sigaction(SIGCHLD, &child, NULL);
  for (;;) pause();
}
