/// `model.layers.0.mlp.up_proj.weight` → `model.layers.0.mlp.up_proj`.
package func moduleName(ofWeight name: String) -> String {
  name.hasSuffix(".weight") ? String(name.dropLast(7)) : name
}
