/*
 * The tutorial's app, lyzhang1999/hello-world-flask, as a static binary for an image FROM scratch.
 * The original is a Flask app on port 5000 answering "Hello, my first docker images! <hostname>"
 * (":latest") or "Hello, my v1 version docker images! <hostname>" (":v1"); in a Pod the hostname
 * is the Pod's name. No registry is reachable here to pull it, Python or a base image from, so this
 * is a few lines of C that build in a second with `gcc -static` and need nothing at run time.
 *
 * Build: gcc -static -O2 -DVERSION_TEXT='"v1 version"' -o hello main.c   (default: "first")
 *
 * It answers every request on every path with the same text, reads at most one buffer of the
 * request (it never parses it), and bounds each connection with a receive/send timeout. As PID 1
 * in a container it must exit on SIGTERM itself: the kernel ignores signals PID 1 has no handler
 * for, and every Pod deletion would wait out its grace period.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef VERSION_TEXT
#define VERSION_TEXT "first"
#endif
#define PORT 5000

static void on_signal(int sig) {
  (void)sig;
  _exit(0);
}

static int send_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  char host[256] = "unknown";
  if (gethostname(host, sizeof host - 1) != 0) strcpy(host, "unknown");
  host[sizeof host - 1] = '\0';
  char body[512];
  int body_len = snprintf(body, sizeof body, "Hello, my %s docker images! %s", VERSION_TEXT, host);
  if (body_len < 0 || (size_t)body_len >= sizeof body) return 1;
  char response[1024];
  int response_len = snprintf(response, sizeof response,
                              "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                              "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                              body_len, body);
  if (response_len < 0 || (size_t)response_len >= sizeof response) return 1;

  int server = socket(AF_INET, SOCK_STREAM, 0);
  if (server < 0) { perror("socket"); return 1; }
  int one = 1;
  setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(PORT);
  if (bind(server, (struct sockaddr *)&addr, sizeof addr) != 0) { perror("bind"); return 1; }
  if (listen(server, 64) != 0) { perror("listen"); return 1; }
  printf(" * Running on http://0.0.0.0:%d (%s)\n", PORT, VERSION_TEXT);
  fflush(stdout);

  for (;;) {
    int client = accept(server, NULL, NULL);
    if (client < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) continue;
      perror("accept");
      return 1;
    }
    struct timeval timeout = {.tv_sec = 5, .tv_usec = 0};
    setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    char request[4096];
    /* One read: enough for curl's or a browser's request line; the answer never depends on it. */
    if (recv(client, request, sizeof request, 0) > 0) send_all(client, response, (size_t)response_len);
    shutdown(client, SHUT_WR);
    close(client);
  }
}
