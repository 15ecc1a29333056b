#!/usr/bin/env bash
# The module graph of one crate: each module of SRC_DIR (one per file; lib.rs is `crate`), the
# modules of the same crate it imports, and every cycle among them.
#
#   bash tools/dev/module_graph.sh [SRC_DIR]     (default: crates/fadlora-model/src)
#
# Imports are `use` items and paths in code starting with `crate::`, `super::`, `self::` or a
# child module's name. A path through a `pub use` re-export counts as an import of the module
# that defines the item (`crate::Wav2Vec2Config` is an import of `config`), so a facade that
# re-exports its children adds no cycle; a glob re-export is not followed. Inline modules count
# towards their file, except `#[cfg(test)]` ones, which are skipped: the graph is that of the
# library. Exits 1 when there is a cycle.
#
# It reads Rust with regular expressions, not a parser: strings and comments are blanked
# first, and an unusual layout (a `use` tree split by a comment, a brace in a char literal)
# may be misread.
set -euo pipefail

src=${1:-crates/fadlora-model/src}
cd "$src"
mapfile -t files < <(find . -name '*.rs' -not -path './bin/*' | sed 's|^\./||' | sort)

awk '
function file_module(f,   m) {
    m = f
    sub(/\.rs$/, "", m)
    if (m == "lib" || m == "main") return ""
    sub(/\/mod$/, "", m)
    gsub(/\//, "::", m)
    return m
}
function display(m) { return m == "" ? "crate" : m }
function join(base, name) { return base == "" ? name : base "::" name }
function parent(m) { if (m !~ /::/) return ""; sub(/::[A-Za-z0-9_]+$/, "", m); return m }
function trim(s) { gsub(/^[ \t\n]+|[ \t\n]+$/, "", s); return s }

# Records the leaves of a use tree (`a::{b::C, d as E, self}`) under `prefix`.
function expand(prefix, tree,   open, depth, i, c, head, inner, item, alias) {
    tree = trim(tree)
    open = index(tree, "{")
    if (open == 0) {
        alias = ""
        if (match(tree, /[ \t]+as[ \t]+/)) {
            alias = trim(substr(tree, RSTART + RLENGTH))
            tree = trim(substr(tree, 1, RSTART - 1))
        }
        if (tree == "self") { tree = prefix; sub(/::$/, "", tree) } else tree = prefix tree
        if (tree == "") return
        if (alias == "") { alias = tree; sub(/.*::/, "", alias) }
        leaf(tree, alias)
        return
    }
    head = substr(tree, 1, open - 1)
    inner = ""
    depth = 0
    item = ""
    for (i = open + 1; i <= length(tree); i++) {
        c = substr(tree, i, 1)
        if (c == "{") depth++
        if (c == "}" && depth == 0) break
        if (c == "}") depth--
        if (c == "," && depth == 0) { if (trim(item) != "") expand(prefix head, item); item = ""; continue }
        item = item c
    }
    if (trim(item) != "") expand(prefix head, item)
}
function leaf(path, alias) {
    n_ref++
    ref_file[n_ref] = filemod
    ref_ctx[n_ref] = ctx
    ref_path[n_ref] = path
    ref_pub[n_ref] = use_pub
    ref_name[n_ref] = alias
}
function use_statement(text) {
    use_pub = text ~ /^[ \t]*pub/
    sub(/^[ \t]*(pub(\([^)]*\))?[ \t]+)?use[ \t]+/, "", text)
    sub(/;.*/, "", text)
    gsub(/::[ \t\n]+/, "::", text)
    expand("", text)
}
function code_paths(text,   pre) {
    use_pub = 0
    while (match(text, /(crate|super|self)(::[A-Za-z_][A-Za-z0-9_]*)+/)) {
        pre = RSTART > 1 ? substr(text, RSTART - 1, 1) : ""
        if (pre !~ /[A-Za-z0-9_]/) leaf(substr(text, RSTART, RLENGTH), "")
        text = substr(text, RSTART + RLENGTH)
    }
}
function current_ctx(   i, m) {
    m = filemod
    for (i = 1; i <= n_stack; i++) m = join(m, stack_name[i])
    return m
}
function in_test(   i) {
    for (i = 1; i <= n_stack; i++) if (stack_test[i]) return 1
    return 0
}

# An absolute module path for `path` seen in module `ctx`; "\001" when it names another crate.
function absolute(ctx, path,   segs, n, i, base) {
    n = split(path, segs, "::")
    i = 1
    if (segs[1] == "crate") { base = ""; i = 2 }
    else if (segs[1] == "super") { base = ctx; while (i <= n && segs[i] == "super") { base = parent(base); i++ } }
    else if (segs[1] == "self") { base = ctx; i = 2 }
    else if (join(ctx, segs[1]) in is_mod) base = ctx
    else return "\001"
    for (; i <= n; i++) base = join(base, segs[i])
    return base
}
# The file module that defines what `abs` names, following `pub use` re-exports.
function resolve(abs,   hops, segs, n, k, prefix, rest, key, j) {
    for (hops = 0; hops < 16; hops++) {
        n = split(abs, segs, "::")
        if (abs == "") n = 0
        for (k = n; k > 0; k--) {
            prefix = segs[1]
            for (j = 2; j <= k; j++) prefix = prefix "::" segs[j]
            if (prefix in is_mod) break
        }
        if (k == 0) prefix = ""
        if (k == n) return owner[prefix]
        key = prefix SUBSEP segs[k + 1]
        if (!(key in reexport) || reexport[key] == abs) return owner[prefix]
        rest = reexport[key]
        for (j = k + 2; j <= n; j++) rest = rest "::" segs[j]
        abs = rest
    }
    return owner[prefix]
}

function strongconnect(v,   list, n, i, w, members, size) {
    index_of[v] = low[v] = ++counter
    tstack[++tsp] = v
    on_stack[v] = 1
    n = split(adj[v], list, " ")
    for (i = 1; i <= n; i++) {
        w = list[i]
        if (!(w in index_of)) {
            strongconnect(w)
            if (low[w] < low[v]) low[v] = low[w]
        } else if (on_stack[w] && index_of[w] < low[v]) low[v] = index_of[w]
    }
    if (low[v] == index_of[v]) {
        n_comp++
        size = 0
        do {
            w = tstack[tsp--]
            on_stack[w] = 0
            comp[w] = n_comp
            size++
        } while (w != v)
        comp_size[n_comp] = size
    }
}
# A shortest cycle through `v` inside its component, as "v -> ... -> v".
function cycle_through(v,   queue, head, tail, u, list, n, i, w, prev, path) {
    head = 1; tail = 0
    n = split(adj[v], list, " ")
    for (i = 1; i <= n; i++) if (comp[list[i]] == comp[v] && !(list[i] in prev)) { prev[list[i]] = v; queue[++tail] = list[i] }
    while (head <= tail && !(v in prev)) {
        u = queue[head++]
        n = split(adj[u], list, " ")
        for (i = 1; i <= n; i++) {
            w = list[i]
            if (comp[w] == comp[v] && !(w in prev)) { prev[w] = u; queue[++tail] = w }
        }
    }
    path = display(v)
    u = prev[v]
    while (u != v) { path = display(u) " -> " path; u = prev[u] }
    return display(v) " -> " path
}

# The same cycle starting from its smallest module name.
function canonical(c,   nodes, n, i, best, out) {
    n = split(c, nodes, / -> /) - 1
    best = 1
    for (i = 2; i <= n; i++) if (nodes[i] < nodes[best]) best = i
    out = nodes[best]
    for (i = 1; i <= n; i++) out = out " -> " nodes[(best + i - 1) % n + 1]
    return out
}

FNR == 1 {
    filemod = file_module(FILENAME)
    is_mod[filemod] = 1
    owner[filemod] = filemod
    n_stack = 0; depth = 0; in_block = 0; in_use = 0; pending_test = 0
    files[++n_files] = filemod
}
{
    line = $0
    if (in_block) {
        if ((i = index(line, "*/")) == 0) next
        line = substr(line, i + 2)
        in_block = 0
    }
    gsub(/"([^"\\]|\\.)*"/, "\"\"", line)
    gsub(/'\''([^'\''\\]|\\.)'\''/, "'\'' '\''", line)
    sub(/\/\/.*/, "", line)
    while ((i = index(line, "/*")) > 0) {
        j = index(substr(line, i + 2), "*/")
        if (j == 0) { line = substr(line, 1, i - 1); in_block = 1; break }
        line = substr(line, 1, i - 1) " " substr(line, i + j + 3)
    }
    if (line ~ /#\[cfg\(test\)\]/) pending_test = 1
    opened = 0
    if (match(line, /(^|[^A-Za-z0-9_])mod[ \t]+[A-Za-z_][A-Za-z0-9_]*[ \t]*\{/)) {
        name = substr(line, RSTART, RLENGTH)
        sub(/^.*mod[ \t]+/, "", name)
        sub(/[ \t]*\{$/, "", name)
        n_stack++
        stack_name[n_stack] = name
        stack_depth[n_stack] = depth
        stack_test[n_stack] = pending_test
        m = current_ctx()
        is_mod[m] = 1
        owner[m] = filemod
        opened = 1
    } else if (line ~ /[^ \t]/ && line !~ /^[ \t]*#\[/) pending_test = 0
    if (opened) pending_test = 0
    ctx = current_ctx()
    if (!in_test()) {
        if (!in_use && line ~ /^[ \t]*(pub(\([^)]*\))?[ \t]+)?use[ \t]/) { in_use = 1; use_text = "" }
        if (in_use) {
            use_text = use_text " " line
            if (index(line, ";")) { use_statement(use_text); in_use = 0 }
        } else code_paths(line)
    }
    t = line
    depth += gsub(/\{/, "", t)
    t = line
    depth -= gsub(/\}/, "", t)
    while (n_stack > 0 && depth <= stack_depth[n_stack]) n_stack--
}

END {
    for (r = 1; r <= n_ref; r++) {
        abs_path[r] = absolute(ref_ctx[r], ref_path[r])
        if (ref_pub[r] && abs_path[r] != "\001" && ref_name[r] != "*")
            reexport[ref_ctx[r] SUBSEP ref_name[r]] = abs_path[r]
    }
    for (r = 1; r <= n_ref; r++) {
        if (abs_path[r] == "\001") continue
        from = display(ref_file[r])
        to = display(resolve(abs_path[r]))
        if (from == to || (from SUBSEP to) in edge) continue
        edge[from, to] = 1
        adj[from] = adj[from] (adj[from] == "" ? "" : " ") to
    }
    width = 0
    for (f = 1; f <= n_files; f++) if (length(display(files[f])) > width) width = length(display(files[f]))
    # Rows by module name, the crate root first.
    for (i = 2; i <= n_files; i++) for (j = i; j > 1 && files[j - 1] > files[j]; j--) { s = files[j]; files[j] = files[j - 1]; files[j - 1] = s }
    for (f = 1; f <= n_files; f++) {
        v = display(files[f])
        n = split(adj[v], list, " ")
        # Sorted, so the output does not depend on the order of the imports in the file.
        for (i = 2; i <= n; i++) for (j = i; j > 1 && list[j - 1] > list[j]; j--) { s = list[j]; list[j] = list[j - 1]; list[j - 1] = s }
        deps = ""
        for (i = 1; i <= n; i++) deps = deps (i > 1 ? " " : "") list[i]
        printf "%-" width "s -> %s\n", v, (deps == "" ? "(nothing)" : deps)
    }
    for (f = 1; f <= n_files; f++) if (!(display(files[f]) in index_of)) strongconnect(display(files[f]))
    # Per group of mutually dependent modules: its members, then the shortest cycle through
    # each member (one line per distinct cycle).
    cycles = 0
    for (f = 1; f <= n_files; f++) {
        v = display(files[f])
        if (comp_size[comp[v]] < 2 || (comp[v] in reported)) continue
        reported[comp[v]] = 1
        members = ""
        for (g = 1; g <= n_files; g++) if (comp[display(files[g])] == comp[v]) members = members " " display(files[g])
        print ""
        print "cycle among" members ":"
        for (g = 1; g <= n_files; g++) {
            w = display(files[g])
            if (comp[w] != comp[v]) continue
            c = canonical(cycle_through(w))
            if (c in printed) continue
            printed[c] = 1
            cycles++
            print "  " c
        }
    }
    if (cycles == 0) { print ""; print "no cycles" }
    exit cycles > 0
}
' "${files[@]}"
