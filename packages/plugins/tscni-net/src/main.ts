import { answerVersionFast } from "@tscni/skel/version"

// VERSION is answered before anything heavy is loaded; see answerVersionFast.
if (!answerVersionFast()) {
  void import("./run.ts").then(({ runTscniNet }) => runTscniNet())
}
