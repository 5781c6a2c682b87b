/*
 * storage_local.c - finished files in a local directory (the default; a
 * shared volume when several replicas run), downloaded through the signed
 * links of links.c. put() renames the spooled file into place, so a file is
 * either absent or complete; a spool dir on another filesystem falls back
 * to copy + fsync + rename.
 */
#include "exports/exports.h"

#include "common/timeutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct local_storage {
    exports_storage base;
    char *dir;
    exports_links *links; /* borrowed */
} local_storage;

static an_status copy_file(const char *from, const char *to, an_error *err)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return an_error_set(err, AN_INTERNAL, "open %s: %s", from, strerror(errno));
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (out < 0) {
        close(in);
        return an_error_set(err, AN_INTERNAL, "create %s: %s", to, strerror(errno));
    }
    char buf[1 << 16];
    an_status s = AN_OK;
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n == 0)
            break;
        if (n < 0 || write(out, buf, (size_t)n) != n) {
            s = an_error_set(err, AN_INTERNAL, "copy to %s: %s", to, strerror(errno));
            break;
        }
    }
    if (s == AN_OK && fsync(out) != 0)
        s = an_error_set(err, AN_INTERNAL, "fsync %s: %s", to, strerror(errno));
    close(in);
    close(out);
    return s;
}

static an_status local_put(exports_storage *st, const char *path, const char *key,
                           const char *content_type, an_error *err)
{
    (void)content_type;
    local_storage *l = (local_storage *)st;
    if (!exports_key_valid(key))
        return an_error_set(err, AN_INTERNAL, "bad storage key %s", key);
    an_buf dst = AN_BUF_INIT, tmp = AN_BUF_INIT;
    an_buf_addf(&dst, "%s/%s", l->dir, key);
    an_status s = AN_OK;
    if (rename(path, dst.data) != 0) {
        if (errno != EXDEV) {
            s = an_error_set(err, AN_INTERNAL, "rename %s -> %s: %s", path, dst.data,
                             strerror(errno));
        } else {
            an_buf_addf(&tmp, "%s/.%s.part", l->dir, key);
            s = copy_file(path, tmp.data, err);
            if (s == AN_OK && rename(tmp.data, dst.data) != 0)
                s = an_error_set(err, AN_INTERNAL, "rename %s: %s", tmp.data, strerror(errno));
            if (s != AN_OK)
                unlink(tmp.data);
            unlink(path);
        }
    }
    an_buf_free(&dst);
    an_buf_free(&tmp);
    return s;
}

static an_status local_url(exports_storage *st, const char *key, int64_t expires_at, an_buf *out,
                           an_error *err)
{
    (void)err;
    local_storage *l = (local_storage *)st;
    exports_links_url(l->links, key, expires_at, out);
    return AN_OK;
}

/* Files of valid keys whose last change is before cutoff_ms, and the
 * ".<key>.part" a crash left during a copy, a day after. */
static size_t local_sweep(exports_storage *st, int64_t cutoff_ms)
{
    local_storage *l = (local_storage *)st;
    DIR *d = opendir(l->dir);
    if (!d)
        return 0;
    size_t n = 0;
    int64_t part_cutoff = an_time_now_ms() - 86400000LL;
    an_buf path = AN_BUF_INIT;
    const struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        bool part = e->d_name[0] == '.' && len > 6 && strcmp(e->d_name + len - 5, ".part") == 0;
        if (!part && !exports_key_valid(e->d_name))
            continue;
        an_buf_reset(&path);
        an_buf_addf(&path, "%s/%s", l->dir, e->d_name);
        struct stat sb;
        if (lstat(path.data, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        int64_t mtime_ms = (int64_t)sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000;
        if (mtime_ms < (part ? part_cutoff : cutoff_ms) && unlink(path.data) == 0)
            n++;
    }
    closedir(d);
    an_buf_free(&path);
    return n;
}

static void local_free(exports_storage *st)
{
    local_storage *l = (local_storage *)st;
    free(l->dir);
    free(l);
}

static const exports_storage_ops local_ops = {"local", local_put, local_url, local_sweep,
                                              local_free};

an_status exports_storage_local_new(const char *dir, exports_links *links, exports_storage **out,
                                    an_error *err)
{
    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
        return an_error_set(err, AN_INVALID_ARGUMENT, "ANALYTICS_EXPORTS_DIR=%s: %s", dir,
                            strerror(errno));
    if (access(dir, W_OK) != 0)
        return an_error_set(err, AN_INVALID_ARGUMENT, "ANALYTICS_EXPORTS_DIR=%s: not writable",
                            dir);
    local_storage *l = calloc(1, sizeof(*l));
    if (!l)
        abort();
    l->base.ops = &local_ops;
    l->dir = strdup(dir);
    l->links = links;
    *out = &l->base;
    return AN_OK;
}

void exports_storage_free(exports_storage *st)
{
    if (st)
        st->ops->free(st);
}
