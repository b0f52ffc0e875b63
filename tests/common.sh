# common.sh: sourced by the tests/run_*.sh runners: where the source tree
# and the modelc binary are (ctest sets SRC and MODELC; by hand they
# default to this checkout and build/modelc), with MODELC made absolute
# because runners change directory.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="${SRC:-$(dirname "$here")}"
MODELC="${MODELC:-$SRC/build/modelc}"
case "$MODELC" in /*) ;; */*) MODELC="$PWD/$MODELC" ;; esac
