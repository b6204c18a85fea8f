// Build-time helper of `heliosdb-wasm build` for JavaScript, TypeScript and
// AssemblyScript procedures, run with the machine's Node.js:
//
//   node heliosdb-js.mjs analyze FILE
//       prints the exported functions of FILE with their parameter and
//       result types as written (TypeScript annotations, or JSDoc tags in
//       plain JavaScript), and the interfaces/classes that can be table rows,
//       as JSON. The engine's toolchain maps these types to WIT and SQL.
//   node heliosdb-js.mjs transpile SRC_DIR OUT_DIR SDK_FILE
//       compiles every .ts/.js module of SRC_DIR to an ES module in OUT_DIR
//       and SDK_FILE to OUT_DIR/heliosdb.js, pointing `from "heliosdb"` at it:
//       QuickJS resolves relative files only, with their extension.
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import ts from "typescript";

function fail(message) {
  console.error(message);
  process.exit(1);
}

function typeText(node, typeNode) {
  const type = typeNode ?? (node && ts.getJSDocType(node));
  return type ? type.getText().replace(/\s+/g, " ").trim() : null;
}

function jsdocReturn(node) {
  const tag = ts.getJSDocReturnType(node);
  return tag ? tag.getText().replace(/\s+/g, " ").trim() : null;
}

function isExported(node) {
  return (ts.getCombinedModifierFlags(node) & ts.ModifierFlags.Export) !== 0;
}

function analyze(file) {
  const text = readFileSync(file, "utf8");
  const kind = /\.(m?js)$/.test(file) ? ts.ScriptKind.JS : ts.ScriptKind.TS;
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, kind);
  const problems = source.parseDiagnostics ?? [];
  if (problems.length) {
    const d = problems[0];
    const { line } = source.getLineAndCharacterOfPosition(d.start ?? 0);
    fail(`${file}:${line + 1}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
  }
  const functions = [];
  const records = {};
  const lineOf = (node) => source.getLineAndCharacterOfPosition(node.getStart()).line + 1;
  const fieldsOf = (members) =>
    members
      .filter((m) => (ts.isPropertySignature(m) || ts.isPropertyDeclaration(m)) && m.name)
      .filter((m) => !(ts.getCombinedModifierFlags(m) & ts.ModifierFlags.Static))
      .map((m) => ({ name: m.name.getText(), type: typeText(m, m.type) }));
  for (const node of source.statements) {
    if (ts.isFunctionDeclaration(node) && node.name && isExported(node)) {
      functions.push({
        name: node.name.text,
        line: lineOf(node),
        params: node.parameters.map((p) => ({
          name: p.name.getText(),
          type: typeText(p, p.type),
          optional: Boolean(p.questionToken || p.initializer),
        })),
        returns: node.type ? typeText(null, node.type) : jsdocReturn(node),
      });
    } else if (ts.isInterfaceDeclaration(node) || ts.isClassDeclaration(node)) {
      if (node.name) records[node.name.text] = fieldsOf(node.members);
    } else if (ts.isTypeAliasDeclaration(node) && ts.isTypeLiteralNode(node.type)) {
      records[node.name.text] = fieldsOf(node.type.members);
    } else if (ts.isVariableStatement(node) && isExported(node)) {
      for (const d of node.declarationList.declarations) {
        if (d.initializer && (ts.isArrowFunction(d.initializer) || ts.isFunctionExpression(d.initializer))) {
          fail(`${file}:${lineOf(d)}: export procedures as \`export function ${d.name.getText()}(...)\``);
        }
      }
    }
  }
  // Plain JavaScript: `/** @typedef {{region: string, total: f64}} SalesRow */`.
  for (const tag of source.statements.flatMap((s) => ts.getJSDocTags(s))) {
    if (ts.isJSDocTypedefTag(tag) && tag.name && tag.typeExpression) {
      const type = tag.typeExpression.type ?? tag.typeExpression;
      if (ts.isTypeLiteralNode(type)) records[tag.name.text] = fieldsOf(type.members);
    }
  }
  return { functions, records };
}

function rewriteSpecifiers(fromFile, outRoot) {
  const sdk = relative(dirname(fromFile), join(outRoot, "heliosdb.js")).split(sep).join("/");
  const target = (spec) => {
    if (spec === "heliosdb") return sdk.startsWith(".") ? sdk : `./${sdk}`;
    if (spec.startsWith(".") && !/\.(m?js|json)$/.test(spec)) return spec.replace(/\.ts$/, "") + ".js";
    return spec;
  };
  return (context) => (root) => {
    const visit = (node) => {
      const f = context.factory;
      if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
        return f.updateImportDeclaration(node, node.modifiers, node.importClause,
          f.createStringLiteral(target(node.moduleSpecifier.text)), node.attributes);
      }
      if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
        return f.updateExportDeclaration(node, node.modifiers, node.isTypeOnly, node.exportClause,
          f.createStringLiteral(target(node.moduleSpecifier.text)), node.attributes);
      }
      return ts.visitEachChild(node, visit, context);
    };
    return ts.visitNode(root, visit);
  };
}

function compile(file, outFile, outRoot) {
  const output = ts.transpileModule(readFileSync(file, "utf8"), {
    fileName: file,
    reportDiagnostics: true,
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ES2022, allowJs: true },
    transformers: { before: [rewriteSpecifiers(outFile, outRoot)] },
  });
  const errors = (output.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (errors.length) fail(`${file}: ${ts.flattenDiagnosticMessageText(errors[0].messageText, "\n")}`);
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, output.outputText);
}

function transpile(srcDir, outDir, sdkFile) {
  const skip = new Set(["node_modules", "build", "dist", "types"]);
  const walk = (dir) =>
    readdirSync(dir).flatMap((name) => {
      const path = join(dir, name);
      if (name.startsWith(".") || skip.has(name)) return [];
      return statSync(path).isDirectory() ? walk(path) : [path];
    });
  for (const file of walk(srcDir)) {
    if (/\.d\.ts$/.test(file) || !/\.(ts|m?js)$/.test(file)) continue;
    const rel = relative(srcDir, file).replace(/\.(ts|mjs)$/, ".js");
    compile(file, join(outDir, rel), outDir);
  }
  compile(sdkFile, join(outDir, "heliosdb.js"), outDir);
}

const [command, ...args] = process.argv.slice(2);
if (command === "analyze" && args.length === 1) {
  console.log(JSON.stringify(analyze(args[0])));
} else if (command === "transpile" && args.length === 3) {
  transpile(...args);
} else {
  fail("usage: heliosdb-js.mjs analyze FILE | transpile SRC_DIR OUT_DIR SDK_FILE");
}
