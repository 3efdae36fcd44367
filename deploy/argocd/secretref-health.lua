-- Argo CD health check for secretsync.io SecretRef (also fits SecretStore and ClusterSecretStore),
-- from the Ready condition:
--   Ready=True                               -> Healthy
--   Ready=False, reason Paused               -> Suspended
--   Ready=False, a transient reason          -> Progressing (retried with backoff; the last good
--                                               data stays in the Secret)
--   Ready=False, any other reason            -> Degraded
--   no Ready condition yet, Ready=Unknown, or status older than the spec -> Progressing
local transient = {
  ProviderThrottled = true,
  ProviderUnavailable = true,
  StoreUnavailable = true,
  KubernetesError = true,
}
local hs = { status = "Progressing", message = "Waiting for the controller to sync" }
if obj.status == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.message = "Waiting for the controller to observe generation " .. tostring(generation)
  return hs
end
for _, c in ipairs(obj.status.conditions or {}) do
  if c.type == "Ready" then
    local reason = c.reason or ""
    hs.message = reason
    if c.message ~= nil and c.message ~= "" then
      hs.message = reason .. ": " .. c.message
    end
    if c.status == "True" then
      hs.status = "Healthy"
    elseif c.status == "False" and reason == "Paused" then
      hs.status = "Suspended"
    elseif c.status == "False" and not transient[reason] then
      hs.status = "Degraded"
    end
    return hs
  end
end
return hs
