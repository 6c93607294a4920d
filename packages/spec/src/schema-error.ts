/**
 * Turns Effect Schema decode failures into short "path.to.field: problem"
 * text, so CNI error messages name the offending field.
 */
import { Schema, SchemaIssue } from "effect"

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/

/** Renders a property path like `ipam.ranges[0][0].subnet` (odd keys as `["cni.dev/x"]`). */
export const formatPath = (path: ReadonlyArray<PropertyKey>): string => {
  let out = ""
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`
    else if (typeof seg === "string" && IDENT.test(seg)) out += out === "" ? seg : `.${seg}`
    else out += `[${JSON.stringify(String(seg))}]`
  }
  return out
}

const ownMessage = (issue: SchemaIssue.Issue): string | undefined => {
  if (issue._tag === "InvalidValue" || issue._tag === "Forbidden") {
    const m = issue.annotations?.message
    return typeof m === "string" ? m : undefined
  }
  return undefined
}

const leafMessage = (issue: SchemaIssue.Leaf): string =>
  issue._tag === "MissingKey" ? "missing" : SchemaIssue.defaultLeafHook(issue)

const walk = (
  issue: SchemaIssue.Issue,
  path: ReadonlyArray<PropertyKey>
): { path: ReadonlyArray<PropertyKey>; message: string } => {
  switch (issue._tag) {
    case "Pointer":
      return walk(issue.issue, [...path, ...issue.path])
    case "Encoding":
      return walk(issue.issue, path)
    case "Composite":
      return walk(issue.issues[0], path)
    case "AnyOf": {
      const first = issue.issues[0]
      if (first !== undefined) return walk(first, path)
      return { path, message: SchemaIssue.makeFormatterDefault()(issue) }
    }
    case "Filter": {
      const inner = walk(issue.issue, path)
      // a filter that produced its own message (or pointed deeper) wins; else the filter's description
      let leaf: SchemaIssue.Issue = issue.issue
      while (leaf._tag === "Pointer") leaf = leaf.issue
      if (ownMessage(leaf) !== undefined || leaf._tag !== "InvalidValue") return inner
      return { path: inner.path, message: SchemaIssue.defaultCheckHook(issue) ?? inner.message }
    }
    default:
      return { path, message: leafMessage(issue) }
  }
}

/**
 * Describes the first problem in a Schema decode failure (a SchemaError or a
 * bare issue) as a dotted path plus message; the path is "" at the root.
 */
export const describeSchemaError = (error: unknown): { path: string; message: string } => {
  const issue = Schema.isSchemaError(error) ? error.issue : SchemaIssue.isIssue(error) ? error : undefined
  if (issue === undefined) {
    return { path: "", message: error instanceof Error ? error.message : String(error) }
  }
  const found = walk(issue, [])
  return { path: formatPath(found.path), message: found.message }
}
