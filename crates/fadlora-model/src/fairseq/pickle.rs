//! A small pickle machine for the `data.pkl` of a `torch.save` zip archive.
//!
//! burn-store's pickle reader turns every `REDUCE` it does not know into an error, and a
//! pickled omegaconf `DictConfig` holds at least one (`collections.defaultdict`, its resolver
//! cache), so it cannot read a fairseq checkpoint with such a `cfg` at all. This machine keeps
//! any object it does not know as an opaque [`Node::Object`] (class, arguments, `BUILD` state),
//! recognises tensors (`torch._utils._rebuild_tensor_v2` over a persistent storage id) and
//! leaves the interpretation to the caller.
//!
//! Objects live in an arena and the stack and memo hold indices, so a container memoised before
//! it is filled (as pickle always does) is seen filled wherever it is referenced.

use std::collections::HashMap;

/// One pickled value. Containers refer to other nodes by arena index.
#[derive(Debug, Clone)]
pub enum Node {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Bytes (their content is never needed).
    Bytes,
    Tuple(Vec<usize>),
    /// Lists, sets and frozensets.
    List(Vec<usize>),
    /// Insertion-ordered; `OrderedDict` too.
    Dict(Vec<(usize, usize)>),
    Global {
        module: String,
        name: String,
    },
    /// `callable(*args)` (`REDUCE`) or `cls.__new__(cls, *args)` (`NEWOBJ`), with the state a
    /// later `BUILD` gave it.
    Object {
        class: usize,
        args: usize,
        state: Option<usize>,
    },
    /// A persistent id `('storage', storage_type, key, location, numel)`.
    Storage {
        storage_type: String,
        key: String,
    },
    /// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`.
    Tensor {
        storage_type: String,
        key: String,
        offset: usize,
        shape: Vec<usize>,
        stride: Vec<usize>,
    },
}

/// The arena of a parsed pickle and the index of its top object.
pub struct Pickle {
    pub nodes: Vec<Node>,
    pub root: usize,
}

const MARK: usize = usize::MAX;

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    nodes: Vec<Node>,
    stack: Vec<usize>,
    memo: HashMap<u64, usize>,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| "truncated pickle".to_string())?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn le(&mut self, n: usize) -> Result<u64, String> {
        let bytes = self.take(n)?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| "truncated pickle (no end of line)".to_string())?;
        self.pos += end + 1;
        String::from_utf8(rest[..end].to_vec()).map_err(|e| e.to_string())
    }

    fn text(&mut self, n: usize) -> Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|e| e.to_string())
    }

    fn push(&mut self, node: Node) {
        self.nodes.push(node);
        self.stack.push(self.nodes.len() - 1);
    }

    fn pop(&mut self) -> Result<usize, String> {
        match self.stack.pop() {
            Some(MARK) | None => Err("pickle stack underflow".into()),
            Some(i) => Ok(i),
        }
    }

    fn top(&self) -> Result<usize, String> {
        match self.stack.last() {
            Some(&MARK) | None => Err("pickle stack underflow".into()),
            Some(&i) => Ok(i),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<usize>, String> {
        let at = self
            .stack
            .iter()
            .rposition(|&i| i == MARK)
            .ok_or_else(|| "pickle MARK not found".to_string())?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn global(&self, i: usize) -> Option<(&str, &str)> {
        match &self.nodes[i] {
            Node::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }

    fn items(&self, i: usize) -> Vec<usize> {
        match &self.nodes[i] {
            Node::Tuple(v) | Node::List(v) => v.clone(),
            _ => Vec::new(),
        }
    }

    fn int(&self, i: usize) -> Option<i64> {
        match self.nodes[i] {
            Node::Int(v) => Some(v),
            _ => None,
        }
    }

    fn ints(&self, i: usize) -> Result<Vec<usize>, String> {
        self.items(i)
            .into_iter()
            .map(|j| {
                self.int(j)
                    .and_then(|v| usize::try_from(v).ok())
                    .ok_or_else(|| "tensor size or stride is not a non-negative int".to_string())
            })
            .collect()
    }

    /// What `callable(*args)` gives: tensors, dicts and sets are understood, anything else is
    /// kept as an opaque object.
    fn reduce(&mut self, callable: usize, args: usize) -> Result<Node, String> {
        let name = self
            .global(callable)
            .map(|(m, n)| format!("{m}.{n}"))
            .unwrap_or_default();
        let a = self.items(args);
        Ok(match name.as_str() {
            "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
                if a.len() < 4 {
                    return Err(format!("{name} with {} arguments", a.len()));
                }
                let (storage_type, key) = match &self.nodes[a[0]] {
                    Node::Storage { storage_type, key } => (storage_type.clone(), key.clone()),
                    other => return Err(format!("{name} over {other:?}, not a storage")),
                };
                let offset = self
                    .int(a[1])
                    .and_then(|v| usize::try_from(v).ok())
                    .ok_or("tensor storage offset is not an int")?;
                Node::Tensor {
                    storage_type,
                    key,
                    offset,
                    shape: self.ints(a[2])?,
                    stride: self.ints(a[3])?,
                }
            }
            // A Parameter: its data tensor.
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
                let first = *a.first().ok_or("_rebuild_parameter without arguments")?;
                self.nodes[first].clone()
            }
            // A tensor subclass: (func, type, args, state); rebuild with func(*args).
            "torch._tensor._rebuild_from_type_v2" => {
                if a.len() < 3 {
                    return Err("_rebuild_from_type_v2 with too few arguments".into());
                }
                self.reduce(a[0], a[2])?
            }
            "collections.OrderedDict" => {
                let mut entries = Vec::new();
                if let Some(&list) = a.first() {
                    for pair in self.items(list) {
                        if let [k, v] = self.items(pair)[..] {
                            entries.push((k, v));
                        }
                    }
                }
                Node::Dict(entries)
            }
            "builtins.set" | "__builtin__.set" | "builtins.frozenset" | "__builtin__.frozenset" => {
                Node::List(a.first().map(|&l| self.items(l)).unwrap_or_default())
            }
            _ => Node::Object {
                class: callable,
                args,
                state: None,
            },
        })
    }

    fn run(mut self) -> Result<Pickle, String> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let version = self.u8()?;
                    if version > 5 {
                        return Err(format!("pickle protocol {version}"));
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => break,
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Node::Global { module, name });
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&self.nodes[module], &self.nodes[name]) {
                        (Node::Str(m), Node::Str(n)) => {
                            let (module, name) = (m.clone(), n.clone());
                            self.push(Node::Global { module, name });
                        }
                        _ => return Err("STACK_GLOBAL without strings".into()),
                    }
                }
                b'q' | b'r' | 0x94 | b'p' => {
                    let idx = match op {
                        b'q' => self.le(1)?,
                        b'r' => self.le(4)?,
                        b'p' => self.line()?.trim().parse().map_err(|_| "bad PUT index")?,
                        _ => self.memo.len() as u64,
                    };
                    let top = self.top()?;
                    self.memo.insert(idx, top);
                }
                b'h' | b'j' | b'g' => {
                    let idx = match op {
                        b'h' => self.le(1)?,
                        b'j' => self.le(4)?,
                        _ => self.line()?.trim().parse().map_err(|_| "bad GET index")?,
                    };
                    let i = *self
                        .memo
                        .get(&idx)
                        .ok_or_else(|| format!("pickle memo {idx} not found"))?;
                    self.stack.push(i);
                }
                b'(' => self.stack.push(MARK),
                b'0' => {
                    self.stack.pop();
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?;
                    self.stack.push(top);
                }
                b'N' => self.push(Node::None),
                0x88 => self.push(Node::Bool(true)),
                0x89 => self.push(Node::Bool(false)),
                b'J' => {
                    let v = self.le(4)? as u32 as i32;
                    self.push(Node::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.le(1)?;
                    self.push(Node::Int(v as i64));
                }
                b'M' => {
                    let v = self.le(2)?;
                    self.push(Node::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.le(1)? as usize
                    } else {
                        self.le(4)? as usize
                    };
                    let bytes = self.take(n)?;
                    if n > 8 {
                        return Err(format!("integer of {n} bytes"));
                    }
                    let mut v: i64 = 0;
                    for (i, &b) in bytes.iter().enumerate() {
                        v |= i64::from(b) << (8 * i);
                    }
                    if n > 0 && n < 8 && bytes[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(Node::Int(v));
                }
                b'I' | b'L' => {
                    let line = self.line()?;
                    let line = line.trim_end_matches('L');
                    let node = match line {
                        "00" => Node::Bool(false),
                        "01" => Node::Bool(true),
                        _ => Node::Int(line.parse().map_err(|_| format!("bad INT {line:?}"))?),
                    };
                    self.push(node);
                }
                b'G' => {
                    let bytes: [u8; 8] = self.take(8)?.try_into().expect("8 bytes");
                    self.push(Node::Float(f64::from_be_bytes(bytes)));
                }
                b'F' => {
                    let line = self.line()?;
                    let v = line
                        .trim()
                        .parse()
                        .map_err(|_| format!("bad FLOAT {line:?}"))?;
                    self.push(Node::Float(v));
                }
                b'X' | b'T' => {
                    let n = self.le(4)? as usize;
                    let s = self.text(n)?;
                    self.push(Node::Str(s));
                }
                0x8c | b'U' => {
                    let n = self.le(1)? as usize;
                    let s = self.text(n)?;
                    self.push(Node::Str(s));
                }
                0x8d => {
                    let n = self.le(8)? as usize;
                    let s = self.text(n)?;
                    self.push(Node::Str(s));
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => self.le(4)?,
                        b'C' => self.le(1)?,
                        _ => self.le(8)?,
                    } as usize;
                    self.take(n)?;
                    self.push(Node::Bytes);
                }
                b')' => self.push(Node::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Node::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n || self.stack[self.stack.len() - n..].contains(&MARK) {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Node::Tuple(items));
                }
                b']' => self.push(Node::List(Vec::new())),
                0x8f => self.push(Node::List(Vec::new())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items));
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items));
                }
                b'a' => {
                    let v = self.pop()?;
                    let list = self.top()?;
                    self.extend(list, vec![v])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.extend(list, items)?;
                }
                b'}' => self.push(Node::Dict(Vec::new())),
                b'd' => {
                    let items = self.pop_mark()?;
                    if !items.len().is_multiple_of(2) {
                        return Err("DICT with an odd number of items".into());
                    }
                    let pairs = items.chunks(2).map(|c| (c[0], c[1])).collect();
                    self.push(Node::Dict(pairs));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let dict = self.top()?;
                    self.set_items(dict, vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let dict = self.top()?;
                    self.set_items(dict, items)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let node = self.reduce(callable, args)?;
                    self.push(node);
                }
                0x81 => {
                    let args = self.pop()?;
                    let class = self.pop()?;
                    self.push(Node::Object {
                        class,
                        args,
                        state: None,
                    });
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let class = self.pop()?;
                    self.push(Node::Object {
                        class,
                        args,
                        state: None,
                    });
                }
                b'b' => {
                    let new_state = self.pop()?;
                    let obj = self.top()?;
                    // State on a dict (an OrderedDict's attributes, e.g. a state dict's
                    // `_metadata`) is not an entry of it and is dropped.
                    if let Node::Object { state, .. } = &mut self.nodes[obj] {
                        *state = Some(new_state);
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let a = self.items(pid);
                    let text = |i: Option<&usize>| match i.map(|&i| &self.nodes[i]) {
                        Some(Node::Str(s)) => Some(s.clone()),
                        Some(Node::Global { name, .. }) => Some(name.clone()),
                        _ => None,
                    };
                    let (storage_type, key) = match (text(a.get(1)), text(a.get(2))) {
                        (Some(t), Some(k)) if text(a.first()).as_deref() == Some("storage") => {
                            (t, k)
                        }
                        _ => return Err("persistent id is not a ('storage', ...) tuple".into()),
                    };
                    self.push(Node::Storage { storage_type, key });
                }
                other => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {}",
                        self.pos - 1
                    ))
                }
            }
        }
        let root = self.pop()?;
        Ok(Pickle {
            nodes: self.nodes,
            root,
        })
    }

    fn extend(&mut self, list: usize, items: Vec<usize>) -> Result<(), String> {
        match &mut self.nodes[list] {
            Node::List(v) => {
                v.extend(items);
                Ok(())
            }
            // list subclasses built by NEWOBJ (rare in checkpoints): keep the items as args.
            _ => Err("APPEND to something that is not a list".into()),
        }
    }

    fn set_items(&mut self, dict: usize, items: Vec<usize>) -> Result<(), String> {
        if !items.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of items".into());
        }
        match &mut self.nodes[dict] {
            Node::Dict(v) => {
                v.extend(items.chunks(2).map(|c| (c[0], c[1])));
                Ok(())
            }
            _ => Err("SETITEM on something that is not a dict".into()),
        }
    }
}

/// Runs the pickle `data`.
pub fn parse(data: &[u8]) -> Result<Pickle, String> {
    Machine {
        data,
        pos: 0,
        nodes: Vec::new(),
        stack: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}
