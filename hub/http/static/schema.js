// Renders /schema/openapi.json as plain HTML: operations, their security, parameters, bodies and
// answers, then the schemas. Text only (textContent), so nothing in the document can inject markup.

const el = (tag, text, className) => {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
};

const refName = (schema) => (schema && schema.$ref ? schema.$ref.split("/").pop() : null);

function schemaText(schema) {
  if (!schema) return "";
  const name = refName(schema);
  if (name) return name;
  if (schema.type === "array") return `${schemaText(schema.items)}[]`;
  if (schema.anyOf) return schema.anyOf.map(schemaText).join(" | ");
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  return schema.type || "any";
}

function bodyText(content) {
  const media = content && content["application/json"];
  return media ? schemaText(media.schema) : "";
}

function operation(path, method, op) {
  const section = el("section", undefined, "op");
  const title = el("h2");
  title.append(el("span", method, "method"), el("code", path), " ", el("span", op.summary || "", "muted"));
  section.append(title, el("p", op.description || ""));
  const security = (op.security || []).map((s) => Object.keys(s)[0]);
  section.append(el("p", `Authentication: ${security.length ? security.join(" or ") : "none"}`, "muted"));
  const rows = [];
  for (const p of op.parameters || []) rows.push([`${p.in} ${p.name}`, p.description || ""]);
  if (op.requestBody) rows.push(["body", `${bodyText(op.requestBody.content)}${op.requestBody.required ? "" : " (optional)"}`]);
  for (const [status, answer] of Object.entries(op.responses || {})) {
    const body = bodyText(answer.content);
    rows.push([status, `${answer.description}${body ? ` → ${body}` : ""}`]);
  }
  const table = el("table");
  for (const [left, right] of rows) {
    const tr = el("tr");
    tr.append(el("th", left), el("td", right));
    table.append(tr);
  }
  section.append(table);
  return section;
}

async function main() {
  const api = document.getElementById("api");
  const response = await fetch("/schema/openapi.json");
  const doc = await response.json();
  document.getElementById("title").textContent = `${doc.info.title} ${doc.info.version} API`;
  api.replaceChildren(el("pre", doc.info.description));
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) api.append(operation(path, method, op));
  }
  api.append(el("h2", "Schemas"));
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    api.append(el("h3", name), el("pre", JSON.stringify(schema, null, 2)));
  }
}

main().catch((error) => {
  document.getElementById("api").replaceChildren(el("p", `Could not load the document: ${error}`));
});
