#!/usr/bin/env node
// A device-level OPC UA server built on node-opcua (an independent stack: not asyncua), emulating
// the door/temperature subset of a steam autoclave the way the bridge expects any device server
// to look (aseptic_cell/opcua/model.py):
//
//   Objects/DeviceSet/<ID>/
//     Identification/{Manufacturer, Model, SerialNumber, DeviceClass}   (Machinery)
//     MachineryItemState/CurrentState
//     SimTime                  s=<ID>/SimTime       Double, the device's clock (s since start)
//     ProcessImage/<key>       s=<ID>/pi/<key>      one variable per reading
//     Records/                 s=<ID>/rec/<key>     JSON strings (status.faults)
//     Methods/<command>        s=<ID>/m/<command>   in: ArgsJson, User, Reason
//                                                   out: Accepted, Code, Reason, PayloadJson
//     Emulator/InjectFault(Fault, ParamsJson), ClearFault(Fault)   test hooks
//
// Doors: SEALED -> (open_door) UNSEALING -> OPEN -> (close_door) CLOSING -> SEALED, each move
// `--door-move-s` seconds. The controller's own interlocks: one door at a time; the clean
// (unload) side opens only when a load was released (never here: no sterilisation programs in
// this subset, start_program is refused NOT_SUPPORTED) or overridden.
//
// Security: SecurityPolicy None on loopback (device level, as the asyncua emulator), anonymous
// only (every user name refused: no default admin), listening on 127.0.0.1 only.
//
// Usage: node interop/device_server.js --port 48470 [--device AC1] [--door-move-s 1.0]
//        [--update-ms 50] [--pki DIR]
// Prints one JSON line {"ready": true, "endpoint": ...} when listening.
"use strict";

const path = require("path");
const os = require("os");
const {
    OPCUAServer, Variant, DataType, StatusCodes, SecurityPolicy, MessageSecurityMode, OPCUACertificateManager,
} = require("node-opcua");

function arg(name, dflt) {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const PORT = parseInt(arg("port", "48470"), 10);
const DEV = arg("device", "AC1");
const DOOR_MOVE_S = parseFloat(arg("door-move-s", "1.0"));
const UPDATE_MS = parseInt(arg("update-ms", "50"), 10);
const PKI = arg("pki", path.join(os.tmpdir(), `aseptic-node-opcua-pki-${process.getuid ? process.getuid() : 0}`));
const NS_URI = "urn:aseptic-cell:device";
const ATM_KPA = 101.325;

// ------------------------------------------------------------------ the device model
const t0 = process.hrtime.bigint();
const now = () => Number(process.hrtime.bigint() - t0) / 1e9;
const doors = { load: { state: "SEALED", until: 0 }, unload: { state: "SEALED", until: 0 } };
const faults = {}; // "sensor:<key>" -> {mode, offset}
let unloadReleased = false;
let unloadOverride = false;

function stepDoors(t) {
    for (const d of Object.values(doors)) {
        if (d.state === "UNSEALING" && t >= d.until) d.state = "OPEN";
        if (d.state === "CLOSING" && t >= d.until) d.state = "SEALED";
    }
}

function sensor(key, trueValue) {
    const f = faults[`sensor:${key}`];
    if (!f) return trueValue;
    if (f.mode === "nan") return NaN;
    if (f.mode === "offset") return trueValue + Number(f.offset || 0);
    if (f.mode === "stuck") return Number(f.value !== undefined ? f.value : trueValue);
    return trueValue;
}

function readings() {
    const t = now();
    stepDoors(t);
    const r = {
        chamber_t_c: sensor("chamber_t_c", 21.0),
        chamber_t_mon_c: sensor("chamber_t_mon_c", 21.0),
        chamber_p_kpa: sensor("chamber_p_kpa", ATM_KPA),
        load_t_c: sensor("load_t_c", 21.0),
        f0_min: 0.0,
        steam_supply_ok: true,
        phase: "IDLE",
        pulse: 0,
        cycle_running: false,
        unload_released: unloadReleased,
        unload_override: unloadOverride,
    };
    for (const side of ["load", "unload"]) {
        const s = doors[side].state;
        r[`${side}_door_state`] = s;
        r[`${side}_door_closed`] = s === "SEALED";
        r[`${side}_door_locked`] = s === "SEALED";
        r[`${side}_door_gasket_ok`] = s === "SEALED";
        r[`${side}_door_open`] = s === "OPEN";
    }
    r["status.unit_id"] = DEV;
    r["status.state"] = "IDLE";
    return r;
}
const RECORDS = () => ({ "status.faults": Object.keys(faults).sort(), "status.doors": { load: doors.load.state, unload: doors.unload.state } });

function refuse(code, reason) { return [false, code, reason, {}]; }

function command(name, args) {
    const t = now();
    stepDoors(t);
    if (name === "open_door" || name === "close_door") {
        const side = args.side;
        if (side !== "load" && side !== "unload") return refuse("INVALID", `side must be load or unload, got ${JSON.stringify(side)}`);
        const other = side === "load" ? "unload" : "load";
        const d = doors[side];
        if (name === "open_door") {
            if (d.state === "OPEN" || d.state === "UNSEALING") return [true, "OK", "", {}];
            if (doors[other].state !== "SEALED") return refuse("AC_OTHER_DOOR_OPEN", `${side} door cannot open: the ${other} door is not sealed`);
            const tc = sensor("chamber_t_c", 21.0);
            if (!(tc < 80.0)) return refuse("AC_HOT", `${side} door cannot open: chamber ${tc} C`);
            if (side === "unload" && !(unloadReleased || unloadOverride)) return refuse("AC_UNLOAD_NOT_RELEASED", "clean-side door opens only after a successful sterilisation cycle");
            d.state = "UNSEALING"; d.until = t + DOOR_MOVE_S;
        } else {
            if (d.state === "SEALED" || d.state === "CLOSING") return [true, "OK", "", {}];
            d.state = "CLOSING"; d.until = t + DOOR_MOVE_S;
            if (side === "unload") { unloadReleased = false; unloadOverride = false; }
        }
        return [true, "OK", "", {}];
    }
    if (name === "override_unload") {
        if (!args.user || !args.reason) return refuse("INVALID", "override needs user and reason");
        unloadOverride = true;
        return [true, "OK", "", {}];
    }
    if (name === "get_result") return [true, "OK", "", { result: null }];
    if (name === "safe_state" || name === "abort") return [true, "OK", "", {}];
    if (name === "start_program") return refuse("NOT_SUPPORTED", "this controller subset runs no programs");
    return refuse("INVALID", `unknown command ${name}`);
}

// ------------------------------------------------------------------ the server
function strArg(name, description) { return { name, dataType: DataType.String, description }; }
const IN_ARGS = [strArg("ArgsJson", "JSON object of the catalogue arguments"), strArg("User", "requester"), strArg("Reason", "reason")];
const OUT_ARGS = [{ name: "Accepted", dataType: DataType.Boolean }, strArg("Code", "OK or refusal code"),
    strArg("Reason", "why refused"), strArg("PayloadJson", "result JSON")];
const COMMANDS = ["open_door", "close_door", "start_program", "abort", "override_unload", "get_result", "safe_state"];

function variantOf(v) {
    if (typeof v === "boolean") return new Variant({ dataType: DataType.Boolean, value: v });
    if (typeof v === "number") return new Variant({ dataType: DataType.Double, value: v });
    return new Variant({ dataType: DataType.String, value: String(v) });
}
function out([accepted, code, reason, payload]) {
    return {
        statusCode: StatusCodes.Good,
        outputArguments: [
            { dataType: DataType.Boolean, value: accepted }, { dataType: DataType.String, value: code },
            { dataType: DataType.String, value: reason }, { dataType: DataType.String, value: JSON.stringify(payload || {}) },
        ],
    };
}

async function main() {
    const serverCertificateManager = new OPCUACertificateManager({ rootFolder: path.join(PKI, "server"), automaticallyAcceptUnknownCertificate: false });
    const server = new OPCUAServer({
        port: PORT,
        host: "127.0.0.1",
        hostname: "127.0.0.1",
        resourcePath: `/aseptic/${DEV}`,
        securityPolicies: [SecurityPolicy.None],
        securityModes: [MessageSecurityMode.None],
        allowAnonymous: true,
        userManager: { isValidUser: () => false },
        serverCertificateManager,
        buildInfo: { productName: `aseptic_cell node-opcua ${DEV}`, manufacturerName: "aseptic_cell interop" },
        maxConnectionsPerEndpoint: 10,
    });
    await server.initialize();
    const as = server.engine.addressSpace;
    const ns = as.registerNamespace(NS_URI);
    const id = (s) => `ns=${ns.index};s=${s}`;
    const devset = ns.addFolder(as.rootFolder.objects, { browseName: "DeviceSet", nodeId: id(`${DEV}/DeviceSet`) });
    const dev = ns.addObject({ organizedBy: devset, browseName: DEV, nodeId: id(DEV) });
    const ident = ns.addObject({ componentOf: dev, browseName: "Identification", nodeId: id(`${DEV}/Identification`) });
    for (const [k, v] of [["Manufacturer", "aseptic_cell interop (node-opcua)"], ["Model", "Autoclave door subset"],
        ["SerialNumber", `NODE-${DEV}`], ["DeviceClass", "Steam autoclave (LADS Device)"]]) {
        ns.addVariable({ propertyOf: ident, browseName: k, nodeId: id(`${DEV}/Identification/${k}`), dataType: "String", value: { dataType: DataType.String, value: v } });
    }
    const mis = ns.addObject({ componentOf: dev, browseName: "MachineryItemState", nodeId: id(`${DEV}/MachineryItemState`) });
    ns.addVariable({ componentOf: mis, browseName: "CurrentState", nodeId: id(`${DEV}/MachineryItemState/CurrentState`), dataType: "String", value: { dataType: DataType.String, value: "NotExecuting" } });
    const simTime = ns.addVariable({ componentOf: dev, browseName: "SimTime", nodeId: id(`${DEV}/SimTime`), dataType: "Double", minimumSamplingInterval: 0, value: { dataType: DataType.Double, value: 0 } });
    const folder = (name) => ns.addObject({ componentOf: dev, browseName: name, nodeId: id(`${DEV}/${name}`), typeDefinition: "FolderType" });
    const pi = folder("ProcessImage");
    const rec = folder("Records");
    const vars = {};
    const last = {};
    for (const [k, v] of Object.entries(readings())) {
        const dt = typeof v === "boolean" ? "Boolean" : typeof v === "number" ? "Double" : "String";
        vars[k] = ns.addVariable({ componentOf: pi, browseName: k, nodeId: id(`${DEV}/pi/${k}`), dataType: dt, minimumSamplingInterval: 0, value: variantOf(v) });
        last[k] = v;
    }
    for (const [k, v] of Object.entries(RECORDS())) {
        vars[k] = ns.addVariable({ componentOf: rec, browseName: k, nodeId: id(`${DEV}/rec/${k}`), dataType: "String", minimumSamplingInterval: 0, value: { dataType: DataType.String, value: JSON.stringify(v) } });
        last[k] = JSON.stringify(v);
    }
    const publish = () => {
        const values = { ...readings() };
        for (const [k, v] of Object.entries(RECORDS())) values[k] = JSON.stringify(v);
        for (const [k, v] of Object.entries(values)) {
            const same = Object.is(last[k], v);
            if (!same && vars[k]) { last[k] = v; vars[k].setValueFromSource(variantOf(v)); }
        }
        simTime.setValueFromSource(new Variant({ dataType: DataType.Double, value: now() }));
    };
    const methods = folder("Methods");
    for (const name of COMMANDS) {
        const m = ns.addMethod(methods, { browseName: name, nodeId: id(`${DEV}/m/${name}`), inputArguments: IN_ARGS, outputArguments: OUT_ARGS });
        m.bindMethod(async (inputs, _context) => {
            let args = {};
            try {
                args = inputs[0] && inputs[0].value ? JSON.parse(inputs[0].value) : {};
                if (typeof args !== "object" || args === null || Array.isArray(args)) throw new Error("ArgsJson must be a JSON object");
            } catch (e) { return out(refuse("INVALID", String(e.message || e))); }
            const result = command(name, args);
            console.error(`[node-opcua ${DEV}] ${name} ${JSON.stringify(args)} -> ${result[1]}`);
            publish();
            return out(result);
        });
    }
    const emu = ns.addObject({ componentOf: dev, browseName: "Emulator", nodeId: id(`${DEV}/Emulator`) });
    ns.addMethod(emu, { browseName: "InjectFault", nodeId: id(`${DEV}/emu/InjectFault`), inputArguments: [strArg("Fault", "fault"), strArg("ParamsJson", "params")], outputArguments: OUT_ARGS })
        .bindMethod(async (inputs, _context) => {
            try {
                const params = inputs[1] && inputs[1].value ? JSON.parse(inputs[1].value) : {};
                faults[inputs[0].value] = { mode: "stuck", ...params };
            } catch (e) { return out(refuse("INVALID", String(e.message || e))); }
            publish();
            return out([true, "OK", "", {}]);
        });
    ns.addMethod(emu, { browseName: "ClearFault", nodeId: id(`${DEV}/emu/ClearFault`), inputArguments: [strArg("Fault", "fault ('' = all)")], outputArguments: OUT_ARGS })
        .bindMethod(async (inputs, _context) => {
            const f = inputs[0] && inputs[0].value;
            if (f) delete faults[f]; else for (const k of Object.keys(faults)) delete faults[k];
            publish();
            return out([true, "OK", "", {}]);
        });

    await server.start();
    setInterval(publish, UPDATE_MS);
    const endpoint = `opc.tcp://127.0.0.1:${PORT}/aseptic/${DEV}`;
    process.stdout.write(JSON.stringify({ ready: true, endpoint, stack: "node-opcua" }) + "\n");
    const stop = async () => { await server.shutdown(100); process.exit(0); };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
}

main().catch((e) => { console.error(e); process.exit(1); });
