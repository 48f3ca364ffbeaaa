// prism-attention/testing: what checks the package and makes test inputs, kept
// apart from the runtime API of the main entry. `validate()` stays in the main
// entry too (the package checks itself against this reference).
export * as reference from './reference';
export * as workloads from './workloads/index';
export { validate } from './validate';
export type { ValidationReport, CaseReport, ValidationCase } from './validate';
