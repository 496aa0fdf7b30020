#!/usr/bin/env bash
# Real-window test of the `lobby` example, played the way a person would: under Xvfb with
# Mesa's software Vulkan driver (lavapipe), real xdotool mouse clicks, ImageMagick
# screenshots.
#
#   scripts/window_test.sh
#
# Run 0: one window without --server (embedded server and bot, what
#   `cargo run --features gui --example lobby` does); click **Find match**; passes when it
#   logs the match-found screen with the bot.
# Run 1: a dedicated `server` (2 players per match) and two `lobby` windows; click
#   **Find match** in each; passes when both windows log the match-found screen with the
#   same lobby code (and the server committed that lobby).
# Run 2: a fresh server and two windows; click **Find match** in the first, then in the
#   second, which runs with `--hold-proposal` so that it stays in the forming match; close
#   the second window (WM_DELETE_WINDOW, as a window manager's close button does) while
#   the match is forming; passes when the first window logs the cancellation and is back
#   in the queue (re-queued).
#
# Installs what it needs with apt-get (when run as root or with sudo), builds the examples
# (`--features gui --example lobby --example server`), and keeps logs and screenshots in
# target/window-test/. Exits non-zero with a message on the first failure.
#
# Environment: WINDOW_TEST_TIMEOUT (seconds to wait for each step, default 60),
# WINDOW_TEST_BUILD_TIMEOUT (default 3600), WINDOW_TEST_FPS (frame cap of the windows,
# default 20), WINDOW_TEST_SKIP_INSTALL=1, CARGO_TARGET_DIR.

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$ROOT/target/window-test
STEP_TIMEOUT=${WINDOW_TEST_TIMEOUT:-60}
BUILD_TIMEOUT=${WINDOW_TEST_BUILD_TIMEOUT:-3600}
# The lobby window's layout (see examples/lobby/main.rs): the action button is centred
# horizontally, its centre 60 px above the window's bottom edge.
BUTTON_FROM_BOTTOM=60
LOBBY_FPS=${WINDOW_TEST_FPS:-20}

PIDS=()
XVFB_PID=
LAST_LOGS=()

say() { echo "window_test: $*"; }

dump_logs() {
    local f
    for f in "${LAST_LOGS[@]}"; do
        [ -f "$f" ] || continue
        echo "----- last lines of $f -----" >&2
        tail -n 25 "$f" >&2 || true
    done
}

fail() {
    echo "window_test: FAIL: $*" >&2
    if [ -n "${DISPLAY:-}" ] && [ -n "$XVFB_PID" ] && command -v import >/dev/null 2>&1; then
        import -display "$DISPLAY" -window root "$OUT/failure-screen.png" 2>/dev/null &&
            echo "window_test: screen at failure: $OUT/failure-screen.png" >&2 || true
    fi
    dump_logs
    exit 1
}

stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

stop_apps() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
}

cleanup() {
    stop_apps
    if [ -n "$XVFB_PID" ]; then stop_pid "$XVFB_PID"; fi
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

# ---------------------------------------------------------------------------------------
# 1. tools

install_tools() {
    local need=()
    command -v Xvfb >/dev/null 2>&1 || need+=(xvfb)
    command -v xdotool >/dev/null 2>&1 || need+=(xdotool)
    { command -v import >/dev/null 2>&1 && command -v identify >/dev/null 2>&1; } || need+=(imagemagick)
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    local pkg
    for pkg in mesa-vulkan-drivers libvulkan1 libx11-6 libx11-xcb1 libxcursor1 libxrandr2 \
        libxi6 libxkbcommon-x11-0 fonts-dejavu-core; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ ${#need[@]} -eq 0 ]; then
        say "tools already installed"
        return
    fi
    if [ "${WINDOW_TEST_SKIP_INSTALL:-0}" = 1 ]; then
        fail "missing packages: ${need[*]} (and WINDOW_TEST_SKIP_INSTALL=1)"
    fi
    local sudo=
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || fail "missing packages ${need[*]}: run as root or install them"
        sudo=sudo
    fi
    command -v apt-get >/dev/null 2>&1 || fail "missing packages ${need[*]} and no apt-get"
    say "installing ${need[*]}"
    timeout 900 $sudo apt-get update -qq || fail "apt-get update failed"
    timeout 900 $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${need[@]}" || fail "apt-get install ${need[*]} failed"
}

# ---------------------------------------------------------------------------------------
# helpers

# wait_log FILE REGEX WHAT [PID]: waits until FILE has a line matching REGEX.
wait_log() {
    local file=$1 re=$2 what=$3 pid=${4:-}
    local deadline=$((SECONDS + STEP_TIMEOUT))
    until grep -Eq -- "$re" "$file" 2>/dev/null; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            fail "$what: the process writing $file exited"
        fi
        [ $SECONDS -lt $deadline ] || fail "$what: nothing matching /$re/ in $file after ${STEP_TIMEOUT}s"
        sleep 0.2
    done
}

# count_log FILE REGEX: number of matching lines.
count_log() { grep -Ec -- "$2" "$1" 2>/dev/null || true; }

# find_window TITLE: prints the X window id of the window with this exact title.
find_window() {
    local title=$1 wid=
    local deadline=$((SECONDS + STEP_TIMEOUT))
    while [ -z "$wid" ]; do
        wid=$(xdotool search --onlyvisible --name "^${title}\$" 2>/dev/null | head -n 1 || true)
        [ -n "$wid" ] && break
        [ $SECONDS -lt $deadline ] || fail "no window titled '$title' after ${STEP_TIMEOUT}s"
        sleep 0.3
    done
    echo "$wid"
}

# click_action WID LOG: a real mouse click on the window's action button; waits until the
# game logs the click (clicks again, up to 3 times, if it did not register).
click_action() {
    local wid=$1 log=$2 X Y WIDTH HEIGHT SCREEN
    eval "$(xdotool getwindowgeometry --shell "$wid")"
    local x=$((X + WIDTH / 2)) y=$((Y + HEIGHT - BUTTON_FROM_BOTTOM))
    local before attempt
    before=$(count_log "$log" '^LOBBY click ')
    for attempt in 1 2 3; do
        say "click at ($x,$y) in window $wid (${WIDTH}x${HEIGHT}+$X+$Y), attempt $attempt"
        xdotool mousemove --sync "$x" "$y"
        sleep 0.4
        xdotool mousedown 1
        sleep 0.15
        xdotool mouseup 1
        local deadline=$((SECONDS + 10))
        while [ $SECONDS -lt $deadline ]; do
            if [ "$(count_log "$log" '^LOBBY click ')" -gt "$before" ]; then
                return 0
            fi
            sleep 0.2
        done
    done
    fail "the click on window $wid was not registered by the game (see $log)"
}

# screenshot WID NAME: saves target/window-test/NAME.png and checks it is not blank.
screenshot() {
    local wid=$1 name=$2
    import -window "$wid" "$OUT/$name.png" || fail "import could not capture window $wid"
    local sd
    sd=$(identify -format '%[fx:standard_deviation]' "$OUT/$name.png" 2>/dev/null || echo 0)
    if awk -v sd="$sd" 'BEGIN { exit !(sd < 0.01) }'; then
        fail "screenshot $OUT/$name.png is blank (standard deviation $sd): nothing rendered"
    fi
    say "screenshot $OUT/$name.png"
}

# close_window WID: asks the window to close, as a window manager's close button does.
close_window() {
    python3 - "$1" <<'PY'
import ctypes, sys
wid = int(sys.argv[1], 0)
x = ctypes.cdll.LoadLibrary("libX11.so.6")
x.XOpenDisplay.restype = ctypes.c_void_p
x.XOpenDisplay.argtypes = [ctypes.c_char_p]
x.XInternAtom.restype = ctypes.c_ulong
x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
x.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
x.XFlush.argtypes = [ctypes.c_void_p]
x.XCloseDisplay.argtypes = [ctypes.c_void_p]
d = x.XOpenDisplay(None)
if not d:
    sys.exit("cannot open the display")

class XClientMessageEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("window", ctypes.c_ulong),
                ("message_type", ctypes.c_ulong), ("format", ctypes.c_int),
                ("data", ctypes.c_long * 5)]

class XEvent(ctypes.Union):
    _fields_ = [("xclient", XClientMessageEvent), ("pad", ctypes.c_long * 24)]

ev = XEvent()
ev.xclient.type = 33  # ClientMessage
ev.xclient.window = wid
ev.xclient.message_type = x.XInternAtom(d, b"WM_PROTOCOLS", 0)
ev.xclient.format = 32
ev.xclient.data[0] = x.XInternAtom(d, b"WM_DELETE_WINDOW", 0)
ev.xclient.data[1] = 0  # CurrentTime
if not x.XSendEvent(d, wid, 0, 0, ctypes.byref(ev)):
    sys.exit("XSendEvent failed")
x.XFlush(d)
x.XCloseDisplay(d)
PY
}

# start_server NAME: starts a dedicated server on a free port; sets SERVER_PID, SERVER_ADDR.
start_server() {
    local log=$OUT/$1-server.log
    # the per-match lines are debug events of target `server`, in the plain format
    RUST_LOG=info,server=debug "$SERVER_BIN" --addr 127.0.0.1:0 --players-per-match 2 --run-for 600 \
        --log-format plain >"$log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    LAST_LOGS+=("$log")
    wait_log "$log" '^server: listening on ' "server start" "$SERVER_PID"
    SERVER_ADDR=$(sed -nE 's/^server: listening on ([^ ]+).*/\1/p' "$log" | head -n 1)
    [ -n "$SERVER_ADDR" ] || fail "cannot read the server address from $log"
    say "server $SERVER_ADDR (pid $SERVER_PID)"
}

# start_lobby NAME CLIENT_ID X [ARGS...]: starts a lobby window; sets LOBBY_PID, LOBBY_LOG,
# LOBBY_WID.
start_lobby() {
    local name=$1 id=$2 xpos=$3
    shift 3
    LOBBY_LOG=$OUT/$name.log
    # --fps: lavapipe does not wait for a display refresh; capped, the two windows leave
    # CPU for the server on small machines
    "$LOBBY_BIN" --client-id "$id" --title "lobby-test-$name" --fps "$LOBBY_FPS" \
        --position "$xpos,0" "$@" >"$LOBBY_LOG" 2>"$OUT/$name.err" &
    LOBBY_PID=$!
    PIDS+=("$LOBBY_PID")
    LAST_LOGS+=("$LOBBY_LOG" "$OUT/$name.err")
    wait_log "$LOBBY_LOG" '^LOBBY screen=home' "$name: first screen" "$LOBBY_PID"
    LOBBY_WID=$(find_window "lobby-test-$name")
    sleep 1 # a few frames on screen before the first click
    say "$name: window $LOBBY_WID (pid $LOBBY_PID)"
}

# ---------------------------------------------------------------------------------------
# 2. set-up

mkdir -p "$OUT"
rm -f "$OUT"/*.png "$OUT"/*.log "$OUT"/*.err
install_tools

say "building the lobby and server examples (a cold build takes several minutes)"
timeout "$BUILD_TIMEOUT" cargo build --features gui --example lobby --example server \
    >"$OUT/build.log" 2>&1 || {
    tail -n 40 "$OUT/build.log" >&2
    fail "cargo build failed (full log: $OUT/build.log)"
}
LOBBY_BIN=$TARGET_DIR/debug/examples/lobby
SERVER_BIN=$TARGET_DIR/debug/examples/server
[ -x "$LOBBY_BIN" ] || fail "no $LOBBY_BIN after the build"
[ -x "$SERVER_BIN" ] || fail "no $SERVER_BIN after the build"

DISPLAY_NUM=
for n in $(seq 90 130); do
    if [ ! -e "/tmp/.X11-unix/X$n" ] && [ ! -e "/tmp/.X$n-lock" ]; then
        DISPLAY_NUM=$n
        break
    fi
done
[ -n "$DISPLAY_NUM" ] || fail "no free X display number in :90..:130"
Xvfb ":$DISPLAY_NUM" -screen 0 1320x560x24 -nolisten tcp >"$OUT/xvfb.log" 2>&1 &
XVFB_PID=$!
export DISPLAY=":$DISPLAY_NUM"
LAST_LOGS+=("$OUT/xvfb.log")
deadline=$((SECONDS + 20))
until xdotool getdisplaygeometry >/dev/null 2>&1; do
    kill -0 "$XVFB_PID" 2>/dev/null || fail "Xvfb exited (see $OUT/xvfb.log)"
    [ $SECONDS -lt $deadline ] || fail "Xvfb did not start in 20s"
    sleep 0.2
done
say "Xvfb on $DISPLAY"

# Mesa's software Vulkan driver, X11 only
export WGPU_BACKEND=vulkan
export LIBGL_ALWAYS_SOFTWARE=1
lvp=$(ls /usr/share/vulkan/icd.d/lvp_icd.*.json 2>/dev/null | head -n 1 || true)
[ -n "$lvp" ] || fail "Mesa's lavapipe Vulkan driver (mesa-vulkan-drivers) is not installed"
export VK_ICD_FILENAMES=$lvp
unset WAYLAND_DISPLAY
export RUST_LOG=${RUST_LOG:-info,wgpu_core=warn,wgpu_hal=warn,naga=warn}

# ---------------------------------------------------------------------------------------
# 3. run 0: one window alone, embedded server and bot (`cargo run --features gui --example lobby`)

say "run 0: one window without --server matches against its embedded bot"
SERVER_ADDR=
start_lobby run0 11 0
A_PID=$LOBBY_PID A_LOG=$LOBBY_LOG A_WID=$LOBBY_WID
grep -q '^LOBBY embedded_server addr=' "$A_LOG" || fail "run0 did not start its embedded server"
click_action "$A_WID" "$A_LOG"
wait_log "$A_LOG" '^LOBBY match_found lobby=' "run0: match-found screen" "$A_PID"
grep -Eq '^LOBBY match_found .* others=1000000007:' "$A_LOG" || fail "run0 was not matched with the bot"
code=$(sed -nE 's/^LOBBY match_found lobby=([^ ]+).*/\1/p' "$A_LOG" | head -n 1)
grep -q "^LOBBY embedded_server committed .* lobby=$code\$" "$A_LOG" ||
    fail "the embedded server did not log a commit of lobby $code"
sleep 1
screenshot "$A_WID" run0-match-found
say "run 0 PASSED: matched with the bot in lobby $code"
stop_apps
LAST_LOGS=()

# ---------------------------------------------------------------------------------------
# 4. run 1: two windows, one match

say "run 1: two windows click Find match and get the same lobby"
start_server run1
start_lobby run1-a 101 0 --server "$SERVER_ADDR"
A_PID=$LOBBY_PID A_LOG=$LOBBY_LOG A_WID=$LOBBY_WID
start_lobby run1-b 102 660 --server "$SERVER_ADDR"
B_PID=$LOBBY_PID B_LOG=$LOBBY_LOG B_WID=$LOBBY_WID
screenshot "$A_WID" run1-a-home

click_action "$A_WID" "$A_LOG"
wait_log "$A_LOG" '^LOBBY screen=queued' "run1-a: queued screen" "$A_PID"
sleep 1.5 # the seconds-waited counter ticks on screen
screenshot "$A_WID" run1-a-queued

click_action "$B_WID" "$B_LOG"
wait_log "$A_LOG" '^LOBBY match_found lobby=' "run1-a: match-found screen" "$A_PID"
wait_log "$B_LOG" '^LOBBY match_found lobby=' "run1-b: match-found screen" "$B_PID"
code_a=$(sed -nE 's/^LOBBY match_found lobby=([^ ]+).*/\1/p' "$A_LOG" | head -n 1)
code_b=$(sed -nE 's/^LOBBY match_found lobby=([^ ]+).*/\1/p' "$B_LOG" | head -n 1)
[ -n "$code_a" ] || fail "run1-a logged no lobby code"
[ "$code_a" = "$code_b" ] || fail "the windows show different lobby codes: '$code_a' and '$code_b'"
grep -q "committed: lobby $code_a " "$OUT/run1-server.log" ||
    fail "the server did not log a commit of lobby $code_a"
grep -Eq "^LOBBY match_found .* others=102:" "$A_LOG" || fail "run1-a does not list player 102"
grep -Eq "^LOBBY match_found .* others=101:" "$B_LOG" || fail "run1-b does not list player 101"
sleep 1
screenshot "$A_WID" run1-a-match-found
screenshot "$B_WID" run1-b-match-found
say "run 1 PASSED: both windows show lobby $code_a"

# the lobby screen and Leave, in one window
click_action "$A_WID" "$A_LOG"
wait_log "$A_LOG" '^LOBBY screen=lobby' "run1-a: lobby screen" "$A_PID"
sleep 1
screenshot "$A_WID" run1-a-lobby
click_action "$A_WID" "$A_LOG"
wait_log "$A_LOG" '^LOBBY lobby_left' "run1-a: Leave" "$A_PID"
wait_log "$A_LOG" '^LOBBY screen=home' "run1-a: back home" "$A_PID"

stop_apps
LAST_LOGS=()

# ---------------------------------------------------------------------------------------
# 5. run 2: the other window closes while the match is forming

say "run 2: one window clicks Find match, the other is closed mid-match"
start_server run2
start_lobby run2-a 201 0 --server "$SERVER_ADDR"
A_PID=$LOBBY_PID A_LOG=$LOBBY_LOG A_WID=$LOBBY_WID
start_lobby run2-b 202 660 --server "$SERVER_ADDR" --hold-proposal
B_PID=$LOBBY_PID B_LOG=$LOBBY_LOG B_WID=$LOBBY_WID

click_action "$A_WID" "$A_LOG"
wait_log "$A_LOG" '^LOBBY screen=queued' "run2-a: queued screen" "$A_PID"
click_action "$B_WID" "$B_LOG"
wait_log "$B_LOG" '^LOBBY matching ' "run2-b: in the forming match" "$B_PID"
wait_log "$A_LOG" '^LOBBY matching ' "run2-a: in the forming match" "$A_PID"
grep -q '^LOBBY cancelled' "$A_LOG" && fail "run2-a: match cancelled before the window was closed"
sleep 0.5 # let the matching screen render
screenshot "$B_WID" run2-b-matching

say "closing window $B_WID (run2-b) mid-match"
closed_at=$EPOCHREALTIME
close_window "$B_WID" || fail "could not send WM_DELETE_WINDOW to window $B_WID"
deadline=$((SECONDS + 15))
while kill -0 "$B_PID" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "run2-b did not exit after its window was closed"
    sleep 0.2
done
wait "$B_PID" && b_status=0 || b_status=$?
[ "$b_status" = 0 ] || fail "run2-b exited with status $b_status after its window was closed"
grep -q '^LOBBY exiting' "$B_LOG" || fail "run2-b did not tell the server it was leaving"

wait_log "$A_LOG" '^LOBBY cancelled .*requeued=true' "run2-a: cancellation with re-queue" "$A_PID"
took=$(awk -v a="$closed_at" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
# the held proposal alone would only time out about 6 s after the proposal (3 attempts of
# 2 s), at least 4 s after the close
awk -v t="$took" 'BEGIN { exit !(t <= 3.0) }' ||
    fail "the cancellation came ${took}s after the close: not caused by it"
say "run2-a saw the cancellation ${took}s after the close"
grep -q '^LOBBY match_found' "$A_LOG" && fail "run2-a reached match found although run2-b left"
wait_log "$A_LOG" '^LOBBY queued .*requeued=true' "run2-a: back in the queue" "$A_PID"
wait_log "$A_LOG" '^LOBBY screen=queued .*notice="Match cancelled' "run2-a: queued screen with the cancellation" "$A_PID"
grep -q 'rolled back' "$OUT/run2-server.log" || fail "the server did not log a rollback"
sleep 1
screenshot "$A_WID" run2-a-cancelled-requeued
reason=$(sed -nE 's/^LOBBY cancelled .*reason="([^"]*)".*/\1/p' "$A_LOG" | head -n 1)
say "run 2 PASSED: run2-a shows the cancellation ($reason) and is back in the queue"

say "PASS (logs and screenshots in $OUT)"
