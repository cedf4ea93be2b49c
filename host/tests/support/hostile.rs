//! Hostile components made at test time: a compile bomb, and a policy with
//! extra linear memories (neither can be written in a language that targets
//! the policy world directly).
#![allow(dead_code)]

use wasm_encoder::{
    BlockType, CodeSection, Component, ExportKind, ExportSection, Function, FunctionSection, InstanceSection, MemArg,
    MemorySection, MemoryType, Module, ModuleSection, StartSection, TypeSection, ValType,
};

/// A component holding one core module whose single function keeps
/// `locals` i64 locals live across `depth` nested loops: small, valid, and
/// slow and memory-hungry for an optimizing compiler (10,000 × 2,000 is
/// 252 KB and takes ~19 s and 1.1 GB to compile on the development machine).
/// Nothing in it implements the policy world: compiling is where it hurts.
pub fn compile_bomb(locals: u32, depth: u32) -> Vec<u8> {
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([ValType::I64], [ValType::I64]);
    module.section(&types);
    let mut functions = FunctionSection::new();
    functions.function(0);
    module.section(&functions);
    let mut exports = ExportSection::new();
    exports.export("bomb", ExportKind::Func, 0);
    module.section(&exports);
    let local = |i: u32| 1 + (i % locals);
    let mut f = Function::new([(locals, ValType::I64)]);
    for i in 0..locals {
        f.instructions().local_get(0).i64_const(i64::from(i)).i64_add().local_set(local(i));
    }
    for level in 0..depth {
        f.instructions().loop_(BlockType::Empty);
        for j in 0..5 {
            let (a, b, c) = (local(j * 7 + level), local(j * 13 + level * 3 + 1), local(j * 31 + level * 5 + 2));
            f.instructions().local_get(a).local_get(b).i64_add().local_set(c);
        }
        f.instructions().local_get(local(level)).i64_const(0).i64_ne().br_if(0);
    }
    for _ in 0..depth {
        f.instructions().end();
    }
    f.instructions().local_get(1);
    for i in 1..locals {
        f.instructions().local_get(local(i)).i64_xor();
    }
    f.instructions().end();
    let mut code = CodeSection::new();
    code.function(&f);
    module.section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    component.finish()
}

/// `component` with `count` more core instances appended, each owning a
/// linear memory of `mib` MiB that its start function touches page by page
/// at instantiation (so the memory is resident, not just reserved). The
/// component still implements whatever it implemented.
pub fn with_side_memories(component: &[u8], count: u32, mib: u32) -> Vec<u8> {
    let existing_modules = top_level_sections(component).filter(|(id, _)| *id == CORE_MODULE_SECTION).count() as u32;
    let mut extra = Component::new();
    for _ in 0..count {
        let mut module = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], []);
        module.section(&types);
        let mut functions = FunctionSection::new();
        functions.function(0);
        module.section(&functions);
        let mut memories = MemorySection::new();
        let pages = u64::from(mib) * 16;
        memories.memory(MemoryType {
            minimum: pages,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        module.section(&memories);
        module.section(&StartSection { function_index: 0 });
        // for (i = 0; i < pages * 65536; i += 4096) mem[i] = 1
        let mut touch = Function::new([(1, ValType::I32)]);
        touch
            .instructions()
            .block(BlockType::Empty)
            .loop_(BlockType::Empty)
            .local_get(0)
            .i32_const((pages * 65536) as i32)
            .i32_ge_u()
            .br_if(1)
            .local_get(0)
            .i32_const(1)
            .i32_store8(MemArg { offset: 0, align: 0, memory_index: 0 })
            .local_get(0)
            .i32_const(4096)
            .i32_add()
            .local_set(0)
            .br(0)
            .end()
            .end()
            .end();
        let mut code = CodeSection::new();
        code.function(&touch);
        module.section(&code);
        extra.section(&ModuleSection(&module));
    }
    let mut instances = InstanceSection::new();
    for i in 0..count {
        instances.instantiate(existing_modules + i, Vec::<(&str, wasm_encoder::ModuleArg)>::new());
    }
    extra.section(&instances);
    let extra = extra.finish();
    // the appended sections, after the original ones (sections may come in any order)
    let mut bytes = component.to_vec();
    bytes.extend_from_slice(&extra[8..]);
    bytes
}

const CORE_MODULE_SECTION: u8 = 1;

/// The top-level sections of a component: (id, payload).
fn top_level_sections(component: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut at = 8;
    std::iter::from_fn(move || {
        if at >= component.len() {
            return None;
        }
        let id = component[at];
        at += 1;
        let (mut size, mut shift) = (0usize, 0);
        loop {
            let byte = component[at];
            at += 1;
            size |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let payload = &component[at..at + size];
        at += size;
        Some((id, payload))
    })
}
