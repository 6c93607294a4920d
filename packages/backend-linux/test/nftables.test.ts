import { describe, expect, test } from "bun:test"
import type { FilterRule } from "@tscni/backend"
import { addRulesScript, deleteRulesScript, parseRuleset, sweepScript } from "../src/nftables.ts"

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

const MIXED = `table arp filter { # handle 4
	chain input { # handle 1
		type filter hook input priority filter; policy accept;
		counter drop # handle 2
	}
}
table inet tscni { # handle 5
	set allowed { # handle 2
		type ipv4_addr
		elements = { 10.1.0.2, 10.1.0.3,
			     10.1.0.4 }
	}
	counter hits { # handle 3
		packets 0 bytes 0
	}
	chain forward { # handle 4
		type filter hook forward priority filter; policy accept;
		ip saddr @allowed tcp dport { 80, 443 } accept comment "cid-1" # handle 5
	}
}
table bridge tscni-mac { # handle 6
	chain prerouting { # handle 1
		type filter hook prerouting priority dstnat; policy accept;
		iifname "veth1234" ether saddr != 0a:58:0a:01:00:02 drop comment "cid-1" # handle 2
	}
}
table netdev tscni-nd { # handle 7
	chain ingress { # handle 1
		type filter hook ingress device "veth1234" priority filter; policy accept;
		ether saddr 0a:58:0a:01:00:09 drop comment "cid-2" # handle 2
	}
}
`

describe("nft listing with other families and objects", () => {
  test("bridge and netdev rules are listed; arp tables and sets, counters, element lists are skipped", () => {
    const { rules, chains } = parseRuleset(MIXED)
    expect(rules.map((r) => [r.family, r.table, r.chain, r.comment, r.handle])).toEqual([
      ["inet", "tscni", "forward", "cid-1", 5],
      ["bridge", "tscni-mac", "prerouting", "cid-1", 2],
      ["netdev", "tscni-nd", "ingress", "cid-2", 2]
    ])
    expect(rules[0]?.rule).toBe("ip saddr @allowed tcp dport { 80, 443 } accept")
    expect(rules[1]?.rule).toBe('iifname "veth1234" ether saddr != 0a:58:0a:01:00:02 drop')
    expect(chains.map((c) => `${c.family} ${c.table} ${c.chain}`)).toEqual([
      "inet tscni forward",
      "bridge tscni-mac prerouting",
      "netdev tscni-nd ingress"
    ])
  })

  test("deleting one owner's bridge rule drops its emptied chain and table", () => {
    expect(deleteRulesScript(parseRuleset(MIXED), "tscni-mac", "cid-1").split("\n")).toEqual([
      "delete rule bridge tscni-mac prerouting handle 2",
      "delete chain bridge tscni-mac prerouting",
      "delete table bridge tscni-mac"
    ])
  })
})

describe("nft add script for bridge and netdev chains", () => {
  const spoof: FilterRule = {
    family: "bridge",
    table: "tscni-mac",
    chain: "prerouting",
    rule: 'iifname "veth1234" ether saddr != 0a:58:0a:01:00:02 drop',
    comment: "cid-1",
    baseChain: { type: "filter", hook: "prerouting", priority: -300 }
  }
  const ingress: FilterRule = {
    family: "netdev",
    table: "tscni-nd",
    chain: "ingress",
    rule: "ether saddr 0a:58:0a:01:00:09 drop",
    comment: "cid-2",
    baseChain: { type: "filter", hook: "ingress", priority: 0, device: "veth1234" }
  }

  test("a bridge base chain at -300 and a netdev chain on its device", () => {
    expect(addRulesScript([spoof, ingress]).split("\n")).toEqual([
      "add table bridge tscni-mac",
      "add chain bridge tscni-mac prerouting { type filter hook prerouting priority -300 ; }",
      'add rule bridge tscni-mac prerouting iifname "veth1234" ether saddr != 0a:58:0a:01:00:02 drop comment "cid-1"',
      "add table netdev tscni-nd",
      'add chain netdev tscni-nd ingress { type filter hook ingress device "veth1234" priority 0 ; }',
      'add rule netdev tscni-nd ingress ether saddr 0a:58:0a:01:00:09 drop comment "cid-2"'
    ])
  })

  test("refuses base chains nft cannot make, and devices that could break out of the script", () => {
    const chain = (family: FilterRule["family"], baseChain: NonNullable<FilterRule["baseChain"]>): FilterRule => ({
      ...spoof,
      family,
      baseChain
    })
    expect(() => addRulesScript([chain("bridge", { type: "nat", hook: "prerouting", priority: 0 })])).toThrow("type filter")
    expect(() => addRulesScript([chain("netdev", { type: "filter", hook: "prerouting", priority: 0 })])).toThrow("ingress or egress")
    expect(() => addRulesScript([chain("netdev", { type: "filter", hook: "ingress", priority: 0 })])).toThrow("needs a device")
    expect(() => addRulesScript([chain("ip", { type: "filter", hook: "ingress", priority: 0, device: "eth0" })])).toThrow()
    expect(() => addRulesScript([chain("ip", { type: "nat", hook: "postrouting", priority: 100, device: "eth0" })])).toThrow("no device")
    expect(() => addRulesScript([chain("netdev", { type: "filter", hook: "ingress", priority: 0, device: 'x" ; flush' })])).toThrow()
    expect(() => addRulesScript([chain("inet", { type: "filter", hook: "ingress", priority: 0, device: "eth0" })])).not.toThrow()
  })
})

describe("sweeping what concurrent DELs leave", () => {
  test("empty chains of the table go, and the table once no chain is left", () => {
    const listing = parseRuleset(`table ip tscni { # handle 2
	chain postrouting { # handle 1
		type nat hook postrouting priority srcnat; policy accept;
	}
	chain prerouting { # handle 5
		type nat hook prerouting priority dstnat; policy accept;
		tcp dport 8080 dnat to 10.1.0.2:80 comment "cid-1" # handle 6
	}
}
table ip6 tscni { # handle 3
	chain postrouting { # handle 1
		type nat hook postrouting priority srcnat; policy accept;
	}
}
table ip other { # handle 4
	chain x { # handle 1
	}
}
`)
    expect(sweepScript(listing, "tscni").split("\n")).toEqual([
      "delete chain ip tscni postrouting",
      "delete chain ip6 tscni postrouting",
      "delete table ip6 tscni"
    ])
  })
})
