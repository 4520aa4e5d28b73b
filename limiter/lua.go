package limiter

import "github.com/redis/go-redis/v9"

// The scripts keep one hash per app. Every time in it is whole microseconds
// on Redis's clock (Lua numbers are doubles: exact for integers up to 2^53,
// which microseconds since 1970 stay under for centuries):
//
//	n, per, margin  the ceiling that wrote the state (margin included: it
//	                sets the spacing)
//	sp              the spacing between slots, ceil((per+margin)/n)
//	tat             the next free slot ("theoretical arrival time")
//	pause           no slot starts before this time
//
// TTLs only collect idle state: the scripts never rely on a key expiring, so
// they are exact on servers whose TTLs do not tick with wall time.

// prelude is shared by the scripts.
const prelude = `
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- keep sets the state's time to live to two windows past its last slot or
-- pause, so idle apps are collected and live ones never are.
local function keep(key, now, tat, pause, gc_ms)
  local ms = math.ceil((math.max(tat, pause) - now) / 1000)
  if ms < 0 then ms = 0 end
  redis.call('PEXPIRE', key, ms + gc_ms)
end

-- conflict tells whether the state was written by another ceiling: 0 when
-- not (or when there is no state), -1 when it was but has not been used for
-- a window (it may be replaced), else the time at which it goes stale.
local function conflict(st, n, per, margin, now)
  local sn, sper, smargin = tonumber(st[1]), tonumber(st[2]), tonumber(st[3])
  if sn == nil or (sn == n and sper == per and smargin == margin) then
    return 0
  end
  local ssp, tat = tonumber(st[4]) or 0, tonumber(st[5]) or 0
  -- tat - sp is the last slot handed out: once both ceilings' windows have
  -- passed since it, no call of the old ceiling shares a window with ours.
  local stale = tat - ssp + math.max(sper + smargin, per + margin)
  if now < stale then
    return stale
  end
  return -1
end
`

// acquireScript hands the caller a slot, or confirms one it holds.
//
// KEYS[1] the app's state. ARGV: n, per, margin, sp (the caller's ceiling),
// gc_ms, max_wait (-1: no limit), held (a slot the caller holds, 0: none),
// late (how long after its slot a holder may still start).
//
// Reply {status, wait, slot, ...}:
//
//	 0  {0, wait, slot, pause}: start in wait µs at slot (wait 0: start
//	    now); no slot of the app starts before pause (0: none set)
//	 1  {1, wait, slot, a, b, c, pause}: the same, after replacing stale
//	    state of ceiling a/b/c
//	-1  {-1, wait, slot}: refused: the slot is wait µs away, beyond
//	    max_wait; nothing reserved
//	-2  {-2, wait, 0, a, b, c}: refused: state of ceiling a/b/c is in use;
//	    stale in wait µs
//
// Every admission thus tells the caller the app's pause as well, so a
// process learns of a pause declared elsewhere from its next admission,
// without a round trip of its own.
var acquireScript = redis.NewScript(prelude + `
local key = KEYS[1]
local n, per, margin, sp = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local gc_ms, max_wait = tonumber(ARGV[5]), tonumber(ARGV[6])
local held, late = tonumber(ARGV[7]), tonumber(ARGV[8])
local now = now_us()
local st = redis.call('HMGET', key, 'n', 'per', 'margin', 'sp', 'tat', 'pause')
local tat, pause = tonumber(st[5]) or 0, tonumber(st[6]) or 0

if held > 0 and held >= pause then
  if now < held then
    -- The holder's clock ran fast: it sleeps the rest, keeping its slot.
    return {0, held - now, held, pause}
  end
  if now - held <= late then
    return {0, 0, held, pause}
  end
  -- Woken too late to start at its slot: starting now could crowd the calls
  -- after it, so it queues again.
end
-- A held slot before the pause fell inside a pause declared after it was
-- handed out: it queues again too.

local c = conflict(st, n, per, margin, now)
if c > 0 then
  return {-2, c - now, 0, tonumber(st[1]), tonumber(st[2]), tonumber(st[3])}
end
local slot = math.max(now, tat, pause)
local wait = slot - now
if max_wait >= 0 and wait > max_wait then
  return {-1, wait, slot}
end
tat = slot + sp
redis.call('HSET', key, 'n', n, 'per', per, 'margin', margin, 'sp', sp, 'tat', tat)
keep(key, now, tat, pause, gc_ms)
if c == -1 then
  return {1, wait, slot, tonumber(st[1]), tonumber(st[2]), tonumber(st[3]), pause}
end
return {0, wait, slot, pause}
`)

// cancelScript gives a slot back if it is still the latest one handed out,
// so the next caller gets it.
//
// KEYS[1] the app's state. ARGV: slot. Reply 1 if given back, else 0.
var cancelScript = redis.NewScript(`
local st = redis.call('HMGET', KEYS[1], 'tat', 'sp')
local tat, sp = tonumber(st[1]), tonumber(st[2])
local slot = tonumber(ARGV[1])
if tat ~= nil and sp ~= nil and tat == slot + sp then
  redis.call('HSET', KEYS[1], 'tat', slot)
  return 1
end
return 0
`)

// pauseScript holds the app's slots until a time: now + d, or the end of the
// current window (windows of per µs counted from 1970) when d is 0. A
// pause never shortens one already set.
//
// KEYS[1] the app's state. ARGV: d, per, gc_ms. Reply {pause_until, now}.
var pauseScript = redis.NewScript(prelude + `
local key = KEYS[1]
local d, per, gc_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_us()
local till
if d > 0 then
  till = now + d
else
  till = now - (now % per) + per
end
local st = redis.call('HMGET', key, 'tat', 'pause')
local tat, cur = tonumber(st[1]) or 0, tonumber(st[2]) or 0
if cur > till then
  till = cur
end
redis.call('HSET', key, 'pause', till)
keep(key, now, tat, till, gc_ms)
return {till, now}
`)

// checkScript tells whether the caller's ceiling may use the app's state,
// changing nothing.
//
// KEYS[1] the app's state. ARGV: n, per, margin. Reply as acquireScript's:
// {0} when it may, or {-2, stale_in, 0, a, b, c} when state of ceiling a/b/c
// is in use.
var checkScript = redis.NewScript(prelude + `
local n, per, margin = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_us()
local st = redis.call('HMGET', KEYS[1], 'n', 'per', 'margin', 'sp', 'tat')
local c = conflict(st, n, per, margin, now)
if c > 0 then
  return {-2, c - now, 0, tonumber(st[1]), tonumber(st[2]), tonumber(st[3])}
end
return {0}
`)
