/**
 * `--etcd-endpoints` as the agent and `cni policy` both take it: comma-separated
 * http(s)://HOST:PORT URLs. Pure, so either can load it without an etcd client.
 */

/** The URLs, or the one (or the whole text) that is not an http(s)://HOST:PORT URL. */
export const parseEtcdEndpoints = (text: string): { readonly urls: ReadonlyArray<string> } | { readonly bad: string } => {
  const urls = text.split(",").map((url) => url.trim()).filter((url) => url !== "")
  const bad = urls.find((url) => !/^https?:\/\/[^\s/]+\/?$/.test(url))
  return urls.length === 0 || bad !== undefined ? { bad: bad ?? text } : { urls }
}
