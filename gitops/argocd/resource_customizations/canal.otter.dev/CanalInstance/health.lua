-- Health of a canal.otter.dev/CanalInstance, from the status canal-operator writes:
-- https://github.com/canal-operator/canal-operator/blob/main/docs/operator.md#status
-- The status is not in kstatus format (it has no Reconciling/Stalled conditions). It has
-- status.observedGeneration and the conditions Ready (a server holds the destination),
-- Progressing (the StatefulSet is not yet at the spec with every pod ready), Degraded
-- (something needs a human), Paused and CursorReset, each with a reason and a message.
--
-- Precedence (the first rule that matches decides):
--   1. no status, or status.observedGeneration ~= metadata.generation -> Progressing
--      (the conditions describe an older spec)
--   2. Degraded=True                                   -> Degraded    "<reason>: <message>"
--      except NoReadyPods while Progressing=True: the operator reports pods that are still
--      starting (every first start, a one-replica restart) as Degraded; here they are
--      Progressing, as in Argo CD's own StatefulSet check -> "<Progressing>; NoReadyPods: ..."
--   3. spec.paused, or Paused=True                      -> Suspended   from the Paused condition
--   4. Progressing=True (Creating, RollingOut)          -> Progressing "<reason>: <message>"
--   5. Ready=True, or Ready=False with ScaledToZero     -> Healthy     "<reason>: <message>"
--   6. anything else (e.g. NoActiveServer)              -> Progressing from the Ready condition
-- Only Lua's base and table libraries are used (Argo CD opens no others by default).
local hs = {}

local function condition(conditions, conditionType)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if type(c) == "table" and c.type == conditionType then
      return c
    end
  end
  return nil
end

local function describe(c)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason == "" then
    return message
  end
  if message == "" then
    return reason
  end
  return reason .. ": " .. message
end

local status = obj.status
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for canal-operator to report the status"
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for canal-operator to observe generation " .. tostring(generation)
    .. " (the status describes generation " .. tostring(status.observedGeneration) .. ")"
  return hs
end

local conditions = status.conditions

local progressing = condition(conditions, "Progressing")
local rolling = progressing ~= nil and progressing.status == "True"

local degraded = condition(conditions, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  if degraded.reason == "NoReadyPods" and rolling then
    hs.status = "Progressing"
    hs.message = describe(progressing) .. "; " .. describe(degraded)
  else
    hs.status = "Degraded"
    hs.message = describe(degraded)
  end
  return hs
end

local paused = condition(conditions, "Paused")
if (obj.spec ~= nil and obj.spec.paused == true) or (paused ~= nil and paused.status == "True") then
  hs.status = "Suspended"
  if paused ~= nil and paused.status == "True" then
    hs.message = describe(paused)
  else
    hs.message = "spec.paused is true"
  end
  return hs
end

if rolling then
  hs.status = "Progressing"
  hs.message = describe(progressing)
  return hs
end

local ready = condition(conditions, "Ready")
if ready ~= nil and (ready.status == "True" or ready.reason == "ScaledToZero") then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
