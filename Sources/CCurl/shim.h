#ifndef CCurl_SHIM_H
#define CCurl_SHIM_H
#include <curl/curl.h>

// curl_easy_setopt/getinfo and curl_multi_setopt are variadic, which Swift cannot call:
// one typed wrapper per argument type instead.

// Options taking a long (flags, timeouts, sizes up to 2 GiB).
static inline CURLcode ferry_easy_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
// Options taking a string (URL, proxy, CA path); libcurl copies it.
static inline CURLcode ferry_easy_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
// Options taking an opaque pointer (callback user data, CURLOPT_PRIVATE).
static inline CURLcode ferry_easy_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
// Options taking a curl_off_t (body sizes above 2 GiB).
static inline CURLcode ferry_easy_setopt_offset(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
// Options taking a header list.
static inline CURLcode ferry_easy_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
// Read, write and header callbacks share this signature.
typedef size_t (*ferry_curl_data_callback)(char *buffer, size_t size, size_t count, void *userdata);
static inline CURLcode ferry_easy_setopt_callback(CURL *h, CURLoption o, ferry_curl_data_callback v) { return curl_easy_setopt(h, o, v); }
// Info queries returning a long (response code).
static inline CURLcode ferry_easy_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
// Info queries returning a curl_off_t (CURLINFO_CONNECT_TIME_T, CURLINFO_SIZE_UPLOAD_T).
static inline CURLcode ferry_easy_getinfo_offset(CURL *h, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(h, i, v); }
// Info queries returning a pointer (CURLINFO_PRIVATE).
static inline CURLcode ferry_easy_getinfo_pointer(CURL *h, CURLINFO i, void **v) { return curl_easy_getinfo(h, i, v); }
// Multi-handle options taking a long (connection cache size).
static inline CURLMcode ferry_multi_setopt_long(CURLM *m, CURLMoption o, long v) { return curl_multi_setopt(m, o, v); }
// Multi-handle options taking a pointer (SOCKETDATA, TIMERDATA).
static inline CURLMcode ferry_multi_setopt_pointer(CURLM *m, CURLMoption o, void *v) { return curl_multi_setopt(m, o, v); }
// The event-loop callbacks of curl_multi_socket_action.
typedef int (*ferry_curl_socket_callback)(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp);
typedef int (*ferry_curl_timer_callback)(CURLM *multi, long timeout_ms, void *userp);
static inline CURLMcode ferry_multi_setopt_socket_callback(CURLM *m, ferry_curl_socket_callback v) { return curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, v); }
static inline CURLMcode ferry_multi_setopt_timer_callback(CURLM *m, ferry_curl_timer_callback v) { return curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, v); }
// CURLOPT_OPENSOCKETFUNCTION and CURLOPT_CLOSESOCKETFUNCTION: the application opens and closes
// libcurl's connection sockets, and so knows when each comes and goes.
typedef curl_socket_t (*ferry_curl_opensocket_callback)(void *clientp, curlsocktype purpose, struct curl_sockaddr *address);
typedef int (*ferry_curl_closesocket_callback)(void *clientp, curl_socket_t item);
static inline CURLcode ferry_easy_setopt_opensocket_callback(CURL *h, ferry_curl_opensocket_callback v) { return curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, v); }
static inline CURLcode ferry_easy_setopt_closesocket_callback(CURL *h, ferry_curl_closesocket_callback v) { return curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, v); }
// CURLMsg keeps the result in a union Swift imports awkwardly.
static inline CURLcode ferry_curlmsg_result(CURLMsg *m) { return m->data.result; }

// Names the calling thread (top -H, /proc/<pid>/task/*/comm); at most 15 characters.
#include <sys/prctl.h>
static inline void ferry_name_this_thread(const char *name) { prctl(PR_SET_NAME, name, 0, 0, 0); }

// epoll for the driver thread. struct epoll_event is packed on x86-64, which Swift does not lay out
// reliably, so it never crosses into Swift: registration by fd, and results as two plain arrays.
#include <sys/epoll.h>
#include <sys/eventfd.h>
static inline int ferry_epoll_set(int epfd, int op, int fd, unsigned int events) {
    struct epoll_event event;
    event.events = events;
    event.data.u64 = 0;
    event.data.fd = fd;
    return epoll_ctl(epfd, op, fd, &event);
}
static inline int ferry_epoll_wait(int epfd, int *fds, unsigned int *events, int capacity, int timeout_ms) {
    struct epoll_event ready[64];
    if (capacity > 64) capacity = 64;
    int n = epoll_wait(epfd, ready, capacity, timeout_ms);
    for (int i = 0; i < n; i++) { fds[i] = ready[i].data.fd; events[i] = ready[i].events; }
    return n;
}
#endif
