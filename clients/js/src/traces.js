// Flag evaluations on the app's own traces: OpenTelemetry's feature_flag.evaluation event.
//
// When the app traces with OpenTelemetry, the hook adds the semantic
// conventions' evaluation event to the span active where the app evaluated
// the flag (the span-event form, as OpenFeature's OpenTelemetry hooks emit
// it), with the flag version from the controller's OFREP metadata. Attributes:
// feature_flag.key, feature_flag.result.variant (the arm),
// feature_flag.result.value (JSON text), feature_flag.result.reason (lower
// case), feature_flag.context.id (the targeting key), feature_flag.provider.name
// (the provider's own name), feature_flag.version (text; not after an error),
// and after an error error.type (the code in lower case) and error.message.
//
// @opentelemetry/api is an optional peer dependency: it is imported, once and
// without waiting, where it is installed, and where it is not the hook records
// nothing. A bundle that cannot resolve it at run time (a browser page) passes
// its own copy as the `otel` option of RolloutEvents: every copy of the API
// shares the tracer and context the app registered.

export const EVENT = "feature_flag.evaluation";

// A name in a variable: bundlers leave the import to run time instead of failing
// where the package is not installed.
const OTEL_API = "@opentelemetry/api";

let imported = null;

/** Settles once the optional import did: @opentelemetry/api's module, or null where it is missing. */
export const otelImport = import(OTEL_API).then(
  (api) => (imported = api),
  () => null,
);

/** @opentelemetry/api's module as imported here, or null (not installed, or not imported yet). */
export function importedOtel() {
  return imported;
}

/** `value` as JSON text, or undefined when it has none. */
function jsonText(value) {
  try {
    return value === undefined ? undefined : JSON.stringify(value);
  } catch {
    return undefined;
  }
}

/** The event's attributes for one evaluation, from a hook's context and the evaluation's details. */
export function evaluationAttributes(hookContext, details) {
  const out = { "feature_flag.key": String(details?.flagKey ?? hookContext?.flagKey) };
  const provider = hookContext?.providerMetadata?.name;
  if (typeof provider === "string") out["feature_flag.provider.name"] = provider;
  const reason = details?.reason;
  out["feature_flag.result.reason"] = typeof reason === "string" ? reason.toLowerCase() : "unknown";
  if (typeof details?.variant === "string") out["feature_flag.result.variant"] = details.variant;
  const given = typeof details === "object" && details !== null && "value" in details;
  const value = jsonText(given ? details.value : hookContext?.defaultValue);
  if (typeof value === "string") out["feature_flag.result.value"] = value;
  const unit = hookContext?.context?.targetingKey;
  if (typeof unit === "string" && unit !== "") out["feature_flag.context.id"] = unit;
  const version = details?.flagMetadata?.flag_version;
  if (typeof details?.errorCode === "string") {
    out["error.type"] = details.errorCode.toLowerCase();
    if (typeof details.errorMessage === "string") out["error.message"] = details.errorMessage;
  } else if (Number.isInteger(version)) {
    out["feature_flag.version"] = String(version);
  }
  return out;
}

/**
 * Add the evaluation's event to the active span of `otel` (@opentelemetry/api),
 * if one is recording. Whether it was added; never throws.
 */
export function recordEvaluation(otel, hookContext, details) {
  try {
    const span = otel?.trace?.getSpan?.(otel.context.active());
    if (!span || !span.isRecording()) return false;
    span.addEvent(EVENT, evaluationAttributes(hookContext, details));
    return true;
  } catch {
    return false;
  }
}
