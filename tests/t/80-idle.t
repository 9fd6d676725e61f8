#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# --idle-timeout, in each io mode (userspace TLS here; with kTLS and --relay splice
# the sidecar does not see the plaintext, and a silent query counts as idle there,
# as README says). A session is idle when the pooler owes no answer: a query that
# runs longer than the timeout without a byte back (pg_sleep), or after a NOTICE, or
# sent as Execute and Flush with no Sync yet (pipeline mode), is not cut; a session that waits at ReadyForQuery is, and so is one that sent half a
# message and stopped, one after an extended-protocol COPY FROM STDIN (two Syncs, one
# ReadyForQuery), one after a Sync and a Flush and a Close, one idle inside a transaction (FATAL
# 25P03 there, as PostgreSQL's idle_in_transaction_session_timeout), one that stops
# reading its answer, and one whose pooler hung up. --idle-in-transaction-timeout
# beside it: the shorter limit inside a transaction (FATAL 25P03), the longer outside.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
ks_setup

direct="host=$FX_PG_SOCKDIR port=$FX_PG_PORT user=app dbname=app"
fx_psql "$direct" -c 'create table idle_in(line text)' -c 'create table itx_copy(id int primary key, pad text)' \
    >/dev/null || BAIL_OUT "create table failed"
# 30 MB of rows for a COPY; its first row waits on another session's lock
python3 -c 'import sys
with open(sys.argv[1], "w") as f:
    for i in range(1, 300001): f.write("%d\t%s\n" % (i, "x" * 90))' "$FX_DIR/itx_copy.tsv"

# A COPY inside a transaction whose first row waits 5 s on another session's row
# lock: the server stops reading, then the pooler, and the sidecar's send waits. The
# session is busy, not idle: the COPY must finish and commit.
copy_stall() {
    fx_psql "$direct" -c "delete from itx_copy" >/dev/null
    fx_psql "$direct" -c 'begin' -c 'insert into itx_copy values (1)' -c 'select pg_sleep(5)' -c 'rollback' \
        >/dev/null 2>&1 &
    local locker=$! rc=0 out
    sleep 1
    out="$(fx_with_timeout 60 fx_psql "$(ks_dsn)" -c 'begin' -c "\\copy itx_copy from '$FX_DIR/itx_copy.tsv'" \
        -c 'commit' 2>&1)" || rc=$?
    wait "$locker" || true
    is "$rc $(fx_psql "$direct" -c 'select count(*) from itx_copy')" "0 300000" "$1, and commits: $out"
}

idle_closed() {
    "$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show stats json 2>/dev/null | jq -r '.closed.idle_timeout'
}

for io in $(ks_io_modes); do
    note "--- io=$io"
    ks_start "i-$io" "$io" --idle-timeout 2s || BAIL_OUT "sidecar did not start"

    out="$(fx_with_timeout 30 fx_psql "$(ks_dsn)" -c 'select pg_sleep(4)' -c 'select 7' 2>&1)" || true
    is "$out" "$(printf '\n7')" "$io: a query silent for twice the idle timeout is not cut"
    out="$(fx_with_timeout 30 fx_psql "$(ks_dsn)" \
        -c "do \$\$ begin raise notice 'step one'; perform pg_sleep(4); end \$\$" -c 'select 8' 2>&1)" || true
    like "$out" 'NOTICE:  step one' "$io: the NOTICE came through"
    like "$out" '8$' "$io: nor is one that sends a NOTICE, then stays silent past the timeout"
    out="$(fx_with_timeout 30 fx_psql "$(ks_dsn)" -c 'begin' -c 'select pg_sleep(3)' -c 'select 9' -c 'commit' 2>&1)" || true
    like "$out" '9' "$io: queries one after another in a transaction, one past the timeout"
    # libpq's pipeline mode: Execute and Flush, the Sync only once the answer came
    out="$(fx_with_timeout 30 python3 "$PGWIRE" flush-query "$KS_PORT" 4 15)"
    is "$out" "1 2 D C Z" "$io: nor is one sent as Execute and Flush with no Sync"
    copy_stall "$io: a COPY stalled 5 s on a lock (the pooler reads nothing) is not cut"
    is "$(idle_closed)" 0 "$io: no session was closed as idle so far"

    fatal='fatal 57P05: terminating connection due to idle-session timeout$'
    out="$(fx_with_timeout 30 python3 "$PGWIRE" idle-wait "$KS_PORT" idle 10)"
    like "$out" '^closed' "$io: a session that waits at ReadyForQuery is closed: $out"
    ms="$(ks_ms "$out")"
    ok "$io: ... after the idle timeout (${ms} ms for 2 s)" test "$ms" -ge 1500 -a "$ms" -lt 9000
    like "$out" "$fatal" "$io: ... told why first, in PostgreSQL's words (FATAL 57P05)"
    out="$(fx_with_timeout 30 python3 "$PGWIRE" idle-wait "$KS_PORT" half 10)"
    like "$out" "^closed.*$fatal" "$io: a session that sent half a message and stopped is closed too: $out"
    out="$(fx_with_timeout 30 python3 "$PGWIRE" idle-wait "$KS_PORT" copy-ext 10)"
    like "$out" "^closed.*$fatal" "$io: ... and one idle after a COPY FROM STDIN over the extended protocol: $out"
    out="$(fx_with_timeout 30 python3 "$PGWIRE" idle-wait "$KS_PORT" sync-flush 10)"
    like "$out" "^closed.*$fatal" "$io: ... and one idle after a Sync, a Flush, a Close and a Flush (none of them starts a transaction): $out"
    is "$(idle_closed)" 4 "$io: the four counted as idle_timeout"
    # psql idle past the timeout: its next query reports the FATAL, as with
    # PostgreSQL's own idle_session_timeout
    out="$({ echo 'select 41;'; sleep 4; echo 'select 42;'; } | fx_with_timeout 30 fx_psql "$(ks_dsn)" 2>&1)" || true
    like "$out" '^41' "$io: psql: the first query ran"
    like "$out" 'FATAL:  terminating connection due to idle-session timeout' "$io: ... the next one, after the timeout, shows why the session ended: $out"
    unlike "$out" $'(^|\n)42($|\n)' "$io: ... and did not run"
    # inside a transaction: PostgreSQL's words for idle_in_transaction_session_timeout
    out="$({ echo 'begin;'; sleep 4; echo 'select 43;'; } | fx_with_timeout 30 fx_psql "$(ks_dsn)" 2>&1)" || true
    like "$out" 'FATAL:  terminating connection due to idle-in-transaction timeout' \
        "$io: psql idle inside a transaction: FATAL 25P03, as PostgreSQL says it: $out"
    unlike "$out" $'(^|\n)43($|\n)' "$io: ... and its next query did not run"
    is "$(idle_closed)" 6 "$io: counted as idle_timeout"
    # a client that holds its session but reads nothing more: after a 20 MB answer
    # it left unread, or after its backend ended (an error, then the pooler's FIN)
    for how in noread kill; do
        PGWIRE_READY="$FX_DIR/$how-$io.ready" python3 "$PGWIRE" idle-wait "$KS_PORT" "$how" 20 \
            >"$FX_DIR/$how-$io.out" 2>&1 &
        hold=$!
        ks_wait_file "$FX_DIR/$how-$io.ready" || true
        ok "$io: $how: the sidecar closes the session within 12 s" _fx_wait_until 12 _ks_relaying_is 0
        kill "$hold" 2>/dev/null || true
        wait "$hold" 2>/dev/null || true
    done
    is "$(idle_closed)" 8 "$io: both counted as idle_timeout"
    like "$(cat "$(fx_sidecar_log "i-$io")")" 'msg="idle timeout"' "$io: the idle close is logged"
    fx_sidecar_stop "i-$io" || true

    # --idle-in-transaction-timeout 2s beside --idle-timeout 6s: inside a transaction
    # the shorter one applies, between transactions the longer
    ks_start "itx-$io" "$io" --idle-timeout 6s --idle-in-transaction-timeout 2s || BAIL_OUT "sidecar did not start"
    closed() { "$KTLS_SIDECAR" ctl --admin-socket "$KS_ADMIN" show stats json | jq -r ".closed.$1"; }
    out="$(fx_with_timeout 30 python3 "$PGWIRE" idle-wait "$KS_PORT" idle 4)"
    like "$out" '^open' "$io: idle 4 s between transactions: open (the 6 s --idle-timeout applies): $out"
    out="$({ echo 'select 46;'; sleep 4; echo 'select 47;'; } | fx_with_timeout 30 fx_psql "$(ks_dsn)" 2>&1)" || true
    is "$out" $'46\n47' "$io: ... psql's next statement after 4 s runs"
    out="$(fx_with_timeout 30 fx_psql "$(ks_dsn)" -c 'begin' -c 'select pg_sleep(3)' -c 'select 45' -c 'commit' 2>&1)" || true
    like "$out" '45' "$io: a query running 3 s inside a transaction is not cut"
    out="$(fx_with_timeout 30 python3 "$PGWIRE" idle-wait "$KS_PORT" begin 10)"
    like "$out" '^closed.*fatal 25P03: terminating connection due to idle-in-transaction timeout$' \
        "$io: a session idle after BEGIN is closed with FATAL 25P03: $out"
    ms="$(ks_ms "$out")"
    ok "$io: ... at the 2 s limit, not the 6 s one (${ms} ms)" test "$ms" -ge 1500 -a "$ms" -lt 4000
    out="$({ echo 'begin;'; sleep 1; echo 'select 43;'; echo 'commit;'; } | fx_with_timeout 30 fx_psql "$(ks_dsn)" 2>&1)" || true
    like "$out" $'(^|\n)43($|\n)' "$io: idle 1 s inside a transaction: its next statement runs"
    copy_stall "$io: ... nor by the in-transaction limit"
    out="$({ echo 'begin;'; sleep 4; echo 'select 44;'; } | fx_with_timeout 30 fx_psql "$(ks_dsn)" 2>&1)" || true
    like "$out" 'FATAL:  terminating connection due to idle-in-transaction timeout' \
        "$io: idle 4 s inside a transaction: FATAL 25P03 at the 2 s limit: $out"
    unlike "$out" $'(^|\n)44($|\n)' "$io: ... its next statement did not run"
    is "$(closed idle_in_transaction_timeout) $(closed idle_timeout)" "2 0" \
        "$io: counted as idle_in_transaction_timeout, not idle_timeout"
    is "$(grep -c 'msg="idle in transaction timeout"' "$(fx_sidecar_log "itx-$io")") $(grep -c 'msg="closed".*reason=idle_in_transaction_timeout' "$(fx_sidecar_log "itx-$io")")" \
        "2 2" "$io: ... and logged so"
    fx_sidecar_stop "itx-$io" || true
done

# --idle-in-transaction-timeout alone: no limit between transactions (the timer
# stops), and it starts again with the next transaction
io="$(ks_io_modes | awk '{print $1}')"
ks_start "itx-only" "$io" --idle-in-transaction-timeout 2s || BAIL_OUT "sidecar did not start"
out="$({ echo 'select 48;'; sleep 3; echo 'begin;'; sleep 4; echo 'select 49;'; } |
    fx_with_timeout 30 fx_psql "$(ks_dsn)" 2>&1)" || true
like "$out" $'^48\n' "--idle-in-transaction-timeout alone: idle 3 s between transactions, not closed"
like "$out" 'FATAL:  terminating connection due to idle-in-transaction timeout' "... then idle 4 s in one: FATAL 25P03: $out"
unlike "$out" $'(^|\n)49($|\n)' "... and the next statement did not run"
fx_sidecar_stop "itx-only" || true

done_testing
