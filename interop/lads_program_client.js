#!/usr/bin/env node
// Issue 18 interop: a generic LADS client (node-opcua) runs a program on a functional unit using only
// the standard model: FunctionalUnitSet/<unit>/FunctionalUnitState/{CurrentState, StartProgram, Clear}
// and ProgramManager/{ProgramTemplateSet, ResultSet} (browse names in the LADS namespace).
// It lists the templates, calls StartProgram, follows CurrentState (subscription) until the run ends
// (Stopped or Aborted), reads the result object named after the returned run id, tries StartProgram
// again (refused while Aborted) and Clears. Prints one JSON object; exit 0 when it ran (the caller
// asserts), 2 on a failure (JSON with "error").
//
// With "prepare" it first puts the cell in the state the program needs, as an integrator would, through
// the other device servers' own methods and variables (browse paths DeviceSet/<ID>/Methods/<command>
// and DeviceSet/<ID>/ProcessImage/<key> in the device namespace): each step is
//   {"endpoint", "device", "call": <command>, "args": {...}}  -> the method (ArgsJson, User, Reason)
//   {"endpoint", "device", "until": <key>, "equals": <value>, "timeoutMs"} -> polls the variable
// The restart/Clear check runs only when the run ended Aborted.
//
// usage: node interop/lads_program_client.js '{"endpoint": ..., "device": "VHP1", "unit": "Decon",
//   "template": "VHP-ISO-SHORT", "operator": "op.nodejs", "jobId": "B-1", "timeoutMs": 120000,
//   "prepare": [...]}'
"use strict";
const {
  OPCUAClient, AttributeIds, BrowseDirection, DataType, TimestampsToReturn, makeBrowsePath, NodeId,
  NodeIdType, Variant, VariantArrayType, DataTypeExtractStrategy,
} = require("node-opcua");

const LADS = "http://opcfoundation.org/UA/LADS/";
const DEVICE_NS = "urn:aseptic-cell:device";
const opt = JSON.parse(process.argv[2] || "{}");
const out = { ok: false, stack: "node-opcua", states: [] };

function emit(code) {
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exit(code);
}

async function prepare(steps) {
  out.prepared = [];
  const sessions = {};
  try {
    for (const step of steps) {
      if (!sessions[step.endpoint]) {
        const cl = OPCUAClient.create({ endpointMustExist: false, connectionStrategy: { maxRetry: 0 } });
        await cl.connect(step.endpoint);
        sessions[step.endpoint] = { cl, s: await cl.createSession() };
      }
      const s = sessions[step.endpoint].s;
      const nsArray = (await s.read({ nodeId: "ns=0;i=2255", attributeId: AttributeIds.Value })).value.value;
      const ns = nsArray.indexOf(DEVICE_NS);
      const esc = (name) => name.replace(/[/.<>:#!&]/g, (ch) => `&${ch}`);  // RelativePath reserved chars
      const path = (rest) => `/${ns}:DeviceSet/${ns}:${esc(step.device)}/${rest}`;
      const resolve = async (p) => {
        const r = await s.translateBrowsePath(makeBrowsePath("ns=0;i=85", p));
        if (!r.targets || !r.targets.length) throw new Error(`prepare: no node at ${p} on ${step.endpoint}`);
        return r.targets[0].targetId;
      };
      if (step.call) {
        const res = await s.call({ objectId: await resolve(path(`${ns}:Methods`)),
          methodId: await resolve(path(`${ns}:Methods/${ns}:${esc(step.call)}`)), inputArguments: [
            new Variant({ dataType: DataType.String, value: JSON.stringify(step.args || {}) }),
            new Variant({ dataType: DataType.String, value: opt.operator || "" }),
            new Variant({ dataType: DataType.String, value: `prepare ${opt.template}` })] });
        const o = (res.outputArguments || []).map((v) => v.value);
        out.prepared.push({ device: step.device, call: step.call, status: res.statusCode.name, accepted: o[0], code: o[1] });
        if (res.statusCode.value !== 0 || o[0] !== true) {
          throw new Error(`prepare: ${step.device}.${step.call} refused: ${res.statusCode.toString()} ${o[1]} ${o[2]}`);
        }
      } else {
        const node = await resolve(path(`${ns}:ProcessImage/${ns}:${esc(step.until)}`));
        const t0 = Date.now();
        let v;
        for (;;) {
          v = (await s.read({ nodeId: node, attributeId: AttributeIds.Value })).value.value;
          if (v === step.equals) break;
          if (Date.now() - t0 > (step.timeoutMs || 60000)) {
            throw new Error(`prepare: ${step.device} ${step.until} is ${v}, not ${step.equals}`);
          }
          await new Promise((r) => setTimeout(r, 100));
        }
        out.prepared.push({ device: step.device, until: step.until, value: v });
      }
    }
  } finally {
    for (const { cl, s } of Object.values(sessions)) {
      await s.close();
      await cl.disconnect();
    }
  }
}

async function main() {
  if (opt.prepare) await prepare(opt.prepare);
  const c = OPCUAClient.create({ endpointMustExist: false, connectionStrategy: { maxRetry: 0 },
    dataTypeExtractStrategy: DataTypeExtractStrategy.Force104 });
  await c.connect(opt.endpoint);
  const session = await c.createSession();
  try {
    const nsArray = (await session.read({ nodeId: "ns=0;i=2255", attributeId: AttributeIds.Value })).value.value;
    const lads = nsArray.indexOf(LADS);
    if (lads < 0) throw new Error("no LADS namespace on the server");
    // the LADS device under DI's DeviceSet (ns of DI): find the device by its browse name
    const di = nsArray.indexOf("http://opcfoundation.org/UA/DI/");
    const devices = await session.browse({
      nodeId: `ns=${di};i=5001`, browseDirection: BrowseDirection.Forward, referenceTypeId: "Organizes",
      includeSubtypes: true, resultMask: 63,
    });
    const dev = devices.references.find((r) => r.browseName.name === opt.device);
    if (!dev) throw new Error(`device ${opt.device} not under DI DeviceSet`);
    const resolve = async (start, path) => {
      const r = await session.translateBrowsePath(makeBrowsePath(start, path));
      if (!r.targets || !r.targets.length) throw new Error(`no node at ${path} (${r.statusCode.toString()})`);
      return r.targets[0].targetId;
    };
    const unitPath = `/${lads}:FunctionalUnitSet/${lads}:${opt.unit}`;
    const unit = await resolve(dev.nodeId, unitPath);
    const fsm = await resolve(unit, `/${lads}:FunctionalUnitState`);
    const current = await resolve(fsm, "/0:CurrentState");
    const templates = await resolve(unit, `/${lads}:ProgramManager/${lads}:ProgramTemplateSet`);
    const tbr = await session.browse({ nodeId: templates, browseDirection: BrowseDirection.Forward,
      referenceTypeId: "HierarchicalReferences", includeSubtypes: true, resultMask: 63 });
    out.templates = tbr.references.filter((r) => r.nodeClass === 1).map((r) => r.browseName.name);
    const read = async (n) => (await session.read({ nodeId: n, attributeId: AttributeIds.Value })).value.value;
    out.initial = (await read(current)).text;

    // follow CurrentState
    const sub = await session.createSubscription2({ requestedPublishingInterval: 50, publishingEnabled: true,
      requestedMaxKeepAliveCount: 20, requestedLifetimeCount: 600, maxNotificationsPerPublish: 100 });
    const mon = await sub.monitor({ nodeId: current, attributeId: AttributeIds.Value },
      { samplingInterval: 0, discardOldest: false, queueSize: 100 }, TimestampsToReturn.Both);
    let done;
    const ended = new Promise((res) => { done = res; });
    mon.on("changed", (dv) => {
      const s = dv.value.value && dv.value.value.text;
      if (out.states[out.states.length - 1] !== s) out.states.push(s);
      if (out.started && (s === "Stopped" || s === "Aborted")) done(s);
    });

    const methodId = async (name) => resolve(fsm, `/${lads}:${name}`);
    const kvType = new NodeId(NodeIdType.NUMERIC, 3003, lads);
    const props = [await session.constructExtensionObject(kvType, { key: "Operator", value: opt.operator })];
    const startArgs = [
      new Variant({ dataType: DataType.String, value: opt.template }),
      new Variant({ dataType: DataType.ExtensionObject, arrayType: VariantArrayType.Array, value: props }),
      new Variant({ dataType: DataType.String, value: opt.jobId || "" }),
      new Variant({ dataType: DataType.String, value: "" }),
      new Variant({ dataType: DataType.ExtensionObject, arrayType: VariantArrayType.Array, value: [] }),
    ];
    const start = await session.call({ objectId: fsm, methodId: await methodId("StartProgram"), inputArguments: startArgs });
    out.startStatus = start.statusCode.name;
    if (start.statusCode.value !== 0) throw new Error(`StartProgram: ${start.statusCode.toString()}`);
    out.runId = start.outputArguments[0].value;
    out.started = true;
    const last = out.states[out.states.length - 1];
    if (last === "Stopped" || last === "Aborted") { if (out.states.includes("Running")) done(last); }
    const timer = setTimeout(() => done("timeout"), opt.timeoutMs || 120000);
    out.final = await ended;
    clearTimeout(timer);
    out.finalRead = (await read(current)).text;

    const result = await resolve(unit, `/${lads}:ProgramManager/${lads}:ResultSet/${lads}:${out.runId}`);
    out.result = {
      description: (await read(await resolve(result, `/${lads}:Description`))).text,
      user: await read(await resolve(result, `/${lads}:User`)),
      jobId: await read(await resolve(result, `/${lads}:SupervisoryJobId`)),
      verdict: await read(await resolve(result, `/${lads}:VariableSet/${lads}:Result`)),
      runId: await read(await resolve(result, `/${lads}:DeviceProgramRunId`)),
    };
    if (out.final !== "Aborted") {
      await sub.terminate();
      out.ok = true;
      return;
    }
    // a new start while Aborted is refused; Clear leaves Aborted
    const again = await session.call({ objectId: fsm, methodId: await methodId("StartProgram"), inputArguments: startArgs });
    out.restartStatus = again.statusCode.name;
    const clear = await session.call({ objectId: fsm, methodId: await methodId("Clear"), inputArguments: [] });
    out.clearStatus = clear.statusCode.name;
    out.afterClear = (await read(current)).text;
    await sub.terminate();
    out.ok = true;
  } finally {
    await session.close();
    await c.disconnect();
  }
}

main().then(() => emit(0)).catch((e) => { out.error = String(e && e.stack || e); emit(2); });
