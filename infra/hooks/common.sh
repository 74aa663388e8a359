# Shared by the posix azd hooks (postprovision.sh, postdeploy.sh): sourced, never run. `hook` names the caller.

# The hooks drive az and azd; without either they say so and stop.
require_tools() {
  for tool in az azd; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "$hook: '$tool' is not installed; see Prerequisites in docs/deploy.md" >&2
      exit 1
    fi
  done
}

# azd exports the environment's values to its hooks; `azd env get-value` covers a manual run.
env_value() {
  value=$(printenv "$1" 2>/dev/null || true)
  if [ -z "$value" ]; then
    value=$(azd env get-value "$1" 2>/dev/null || true)
  fi
  printf '%s' "$value"
}
