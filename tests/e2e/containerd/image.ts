/**
 * The sandbox image, built here so that no registry is ever contacted: Debian's static
 * busybox as the only file of one layer, run as `busybox sleep` (a pause container),
 * written as an OCI image archive whose index names it `tscni.test/sandbox:1`, exactly the
 * name containerd's `sandbox_image` is set to, so `ctr -n k8s.io images import` makes it
 * the image RunPodSandbox uses and nothing is pulled.
 *
 *   bun tests/e2e/containerd/image.ts OUT.tar
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

export const SANDBOX_IMAGE = "tscni.test/sandbox:1"

const sha256 = (data: Uint8Array | string): string => new Bun.CryptoHasher("sha256").update(data).digest("hex")

const run = (argv: ReadonlyArray<string>) => {
  const out = Bun.spawnSync([...argv], { stderr: "pipe" })
  if (out.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${out.stderr.toString()}`)
}

/** Writes the OCI archive to `out`. */
export const buildSandboxImage = (out: string): void => {
  const work = mkdtempSync(join(tmpdir(), "tscni-image-"))
  try {
    const rootfs = join(work, "rootfs")
    mkdirSync(join(rootfs, "bin"), { recursive: true })
    writeFileSync(join(rootfs, "bin", "busybox"), readFileSync("/bin/busybox"), { mode: 0o755 })
    // a layer of one file, reproducible (fixed owner, time, order)
    run(["tar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0", "-cf", join(work, "layer.tar"), "-C", rootfs, "bin"])
    const layer = readFileSync(join(work, "layer.tar"))
    const layerDigest = sha256(layer)
    const config = JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: { Entrypoint: ["/bin/busybox", "sleep", "2147483647"] },
      rootfs: { type: "layers", diff_ids: [`sha256:${layerDigest}`] }
    })
    const configDigest = sha256(config)
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: `sha256:${configDigest}`, size: Buffer.byteLength(config) },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: `sha256:${layerDigest}`, size: layer.byteLength }]
    })
    const manifestDigest = sha256(manifest)
    const layout = join(work, "layout")
    mkdirSync(join(layout, "blobs", "sha256"), { recursive: true })
    writeFileSync(join(layout, "blobs", "sha256", layerDigest), layer)
    writeFileSync(join(layout, "blobs", "sha256", configDigest), config)
    writeFileSync(join(layout, "blobs", "sha256", manifestDigest), manifest)
    writeFileSync(join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }))
    writeFileSync(join(layout, "index.json"), JSON.stringify({
      schemaVersion: 2,
      manifests: [{
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: `sha256:${manifestDigest}`,
        size: Buffer.byteLength(manifest),
        platform: { architecture: "amd64", os: "linux" },
        annotations: { "io.containerd.image.name": SANDBOX_IMAGE, "org.opencontainers.image.ref.name": "1" }
      }]
    }))
    run(["tar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0", "-cf", out, "-C", layout, "oci-layout", "index.json", "blobs"])
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

if (import.meta.main) buildSandboxImage(process.argv[2] ?? "sandbox.tar")
