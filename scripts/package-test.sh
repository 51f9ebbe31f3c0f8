#!/usr/bin/env bash
# The Debian package, tested as an operator uses it (as root): build it,
# read its metadata, install it with dpkg -i, verify the systemd unit,
# read the man page, validate the shipped configuration, complete a
# command, then remove and purge it and check that nothing is left.
# Fails loudly at the first step that does not hold; the package is purged
# on the way out, also on failure.
#
#   sudo scripts/package-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "package-test.sh: run as root (dpkg -i)" >&2; exit 1; }
step() { echo "package-test: $*"; }
fail() { echo "package-test: FAILED: $*" >&2; exit 1; }

if dpkg-query -W -f='${Status}' ferrolb 2>/dev/null | grep -q installed; then
    fail "a ferrolb package is already installed here; remove it first (dpkg -P ferrolb)"
fi
trap 'dpkg -P ferrolb >/dev/null 2>&1 || true' EXIT

DEB=$(scripts/package.sh)
[ -f "$DEB" ] || fail "scripts/package.sh made no package"
step "built $DEB ($(du -h "$DEB" | cut -f1))"

# Metadata: DPDK's runtime libraries, never -dev packages; the files.
DEPENDS=$(dpkg-deb -f "$DEB" Depends)
step "Depends: $DEPENDS"
grep -q 'librte-eal23' <<<"$DEPENDS" || fail "Depends lacks librte-eal23"
grep -q 'librte-net-tap23' <<<"$DEPENDS" || fail "Depends lacks librte-net-tap23 (the exception path)"
if grep -q -- '-dev' <<<"$DEPENDS"; then fail "Depends names a -dev package"; fi
CONTENTS=$(dpkg-deb -c "$DEB")
for f in ./usr/bin/ferrolb ./usr/lib/systemd/system/ferrolb.service ./etc/ferrolb/ferrolb.toml \
         ./usr/share/man/man1/ferrolb.1.gz ./usr/share/man/man1/ferrolb-run.1.gz \
         ./usr/share/bash-completion/completions/ferrolb ./usr/share/doc/ferrolb/CONFIGURATION.md; do
    grep -q " $f\$" <<<"$CONTENTS" || fail "the package lacks $f"
done
[ "$(dpkg-deb -f "$DEB" Package)" = ferrolb ] || fail "package name"
dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles | grep -qx /etc/ferrolb/ferrolb.toml \
    || fail "/etc/ferrolb/ferrolb.toml is not a conffile"

# Install.
dpkg -i "$DEB" >/dev/null || fail "dpkg -i"
step "installed: $(/usr/bin/ferrolb --version)"

# The unit: systemd's own checks, and what it runs.
UNIT=/usr/lib/systemd/system/ferrolb.service
systemd-analyze verify "$UNIT" || fail "systemd-analyze verify $UNIT"
for line in 'ExecStartPre=/usr/bin/ferrolb check --config /etc/ferrolb/ferrolb.toml' \
            'ExecReload=/bin/kill -HUP $MAINPID' 'LimitMEMLOCK=infinity' 'Restart=on-failure' \
            'After=network-online.target dev-hugepages.mount'; do
    grep -qxF "$line" "$UNIT" || fail "the unit lacks: $line"
done
step "systemd-analyze verify: ok"

# The man pages render and describe the commands. (A dpkg configured to
# skip /usr/share/man, as some container images are, installs none: then
# read them from the package itself, and say so.)
MANDIR=/usr/share/man/man1
if [ ! -f $MANDIR/ferrolb.1.gz ]; then
    grep -rqs 'path-exclude=/usr/share/man' /etc/dpkg/dpkg.cfg.d/ \
        || fail "$MANDIR/ferrolb.1.gz was not installed"
    X=$(mktemp -d); dpkg-deb -x "$DEB" "$X"; MANDIR=$X/usr/share/man/man1
    step "this dpkg skips /usr/share/man: reading the pages from the package"
fi
MAN=$(MANWIDTH=100 man -l $MANDIR/ferrolb.1.gz 2>&1) || fail "man -l ferrolb.1.gz: $MAN"
for w in real-setup status conns reload; do
    grep -q "$w" <<<"$MAN" || fail "ferrolb(1) does not mention $w"
done
MAN=$(MANWIDTH=100 man -l $MANDIR/ferrolb-status.1.gz 2>&1) || fail "man -l ferrolb-status.1.gz"
grep -q -- '--rate' <<<"$MAN" || fail "ferrolb-status(1) does not describe --rate"
step "man pages: ok"

# The shipped configuration validates.
OUT=$(/usr/bin/ferrolb check --config /etc/ferrolb/ferrolb.toml) || fail "ferrolb check on the shipped file: $OUT"
step "$OUT"

# Completion: bash completes the subcommands.
COMP=$(bash -c 'source /usr/share/bash-completion/completions/ferrolb
COMP_WORDS=(ferrolb st); COMP_CWORD=1; _ferrolb ferrolb st ferrolb; echo "${COMPREPLY[@]}"') \
    || fail "bash completion"
grep -qw status <<<"$COMP" || fail "bash completion of 'ferrolb st' gave: $COMP"
step "bash completion of 'ferrolb st': $COMP"

# Remove: the binary goes, the edited conffile stays; purge: all gone.
echo "# edited" >> /etc/ferrolb/ferrolb.toml
dpkg -r ferrolb >/dev/null || fail "dpkg -r"
[ ! -e /usr/bin/ferrolb ] || fail "/usr/bin/ferrolb left after dpkg -r"
[ ! -e "$UNIT" ] || fail "$UNIT left after dpkg -r"
[ -f /etc/ferrolb/ferrolb.toml ] || fail "dpkg -r removed the operator's configuration"
dpkg -P ferrolb >/dev/null || fail "dpkg -P"
[ ! -e /etc/ferrolb/ferrolb.toml ] || fail "/etc/ferrolb/ferrolb.toml left after purge"
if dpkg-query -W ferrolb >/dev/null 2>&1 && dpkg-query -W -f='${Status}' ferrolb | grep -q installed; then
    fail "still installed after purge"
fi
step "removed and purged cleanly"
echo "package-test: OK"
