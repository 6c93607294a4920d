import { describe, expect, test } from "bun:test"
import type { FilterRule } from "@tscni/backend"
import { addRulesScript, deleteRulesScript, parseRuleset } from "../src/nftables.ts"

const LISTING = `table ip filter { # handle 1
	chain INPUT { # handle 1
		type filter hook input priority filter; policy accept;
		tcp dport 22 accept # handle 4
	}
}
table ip tscni { # handle 2
	chain postrouting { # handle 1
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.1.0.2 masquerade comment "cid-1" # handle 2
		ip saddr 10.1.0.3 masquerade comment "cid-2" # handle 3
	}
	chain prerouting { # handle 5
		type nat hook prerouting priority dstnat; policy accept;
		tcp dport 8080 dnat to 10.1.0.2:80 comment "cid-1" # handle 6
	}
}
table ip6 tscni { # handle 3
	chain postrouting { # handle 1
		type nat hook postrouting priority srcnat; policy accept;
		ip6 saddr fd00::2 masquerade comment "cid-1" # handle 2
	}
}
`

describe("nft ruleset listing", () => {
  test("rules with their table, chain, comment and handle", () => {
    const { rules, chains } = parseRuleset(LISTING)
    expect(rules).toContainEqual({ family: "ip", table: "tscni", chain: "prerouting", rule: "tcp dport 8080 dnat to 10.1.0.2:80", comment: "cid-1", handle: 6 })
    expect(rules.filter((rule) => rule.table === "tscni")).toHaveLength(4)
    expect(rules.find((rule) => rule.table === "filter")).toMatchObject({ comment: "", rule: "tcp dport 22 accept" })
    expect(chains).toHaveLength(4)
  })

  test("deleting one owner's rules keeps shared chains and drops emptied ones", () => {
    const script = deleteRulesScript(parseRuleset(LISTING), "tscni", "cid-1").split("\n")
    expect(script).toEqual([
      "delete rule ip tscni postrouting handle 2",
      "delete rule ip tscni prerouting handle 6",
      "delete rule ip6 tscni postrouting handle 2",
      "delete chain ip tscni prerouting",
      "delete chain ip6 tscni postrouting",
      "delete table ip6 tscni"
    ])
  })

  test("nothing to delete is an empty script; other tables are never named", () => {
    expect(deleteRulesScript(parseRuleset(LISTING), "tscni", "cid-9")).toBe("")
    expect(deleteRulesScript(parseRuleset(LISTING), "tscni", "cid-2")).not.toContain("filter")
  })
})

describe("nft add script", () => {
  const rule: FilterRule = {
    family: "ip",
    table: "tscni",
    chain: "postrouting",
    rule: "ip saddr 10.1.0.2 masquerade",
    comment: "cid-1",
    baseChain: { type: "nat", hook: "postrouting", priority: 100 }
  }
  test("declares table and base chain once, then the rules", () => {
    expect(addRulesScript([rule, { ...rule, rule: "ip saddr 10.1.0.3 masquerade" }]).split("\n")).toEqual([
      "add table ip tscni",
      "add chain ip tscni postrouting { type nat hook postrouting priority 100 ; }",
      'add rule ip tscni postrouting ip saddr 10.1.0.2 masquerade comment "cid-1"',
      'add rule ip tscni postrouting ip saddr 10.1.0.3 masquerade comment "cid-1"'
    ])
  })
  test("refuses comments and rules that could break out of the script", () => {
    expect(() => addRulesScript([{ ...rule, comment: 'x" ; flush ruleset ; "' }])).toThrow()
    expect(() => addRulesScript([{ ...rule, rule: "accept\nflush ruleset" }])).toThrow()
    expect(() => addRulesScript([{ ...rule, table: "bad table" }])).toThrow()
  })
})
