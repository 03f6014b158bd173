import React, { useState } from "react";
import * as utils from "./utils.js";
export const LIMIT = 10;

/** A counter. */
export class Counter extends Base {
  count = 0;
  static #instances = 0;
  constructor(name) {
    super(name);
    this.name = name;
  }
  increment(step = 1) {
    this.count += step;
    if (this.count > LIMIT) {
      throw new Error(`too many: ${this.count}`);
    } else if (step < 0) {
      return null;
    }
    return this.count;
  }
}

async function load(urls) {
  const results = [];
  for (const url of urls) {
    try {
      const res = await fetch(url, { method: "GET" });
      results.push(res.ok ? await res.json() : undefined);
    } catch (err) {
      console.error(err);
      continue;
    } finally {
      count++;
    }
  }
  switch (results.length) {
    case 0: return [];
    default: break;
  }
  return results.filter((r) => r !== undefined);
}

export default function App({ items }) {
  const [n, setN] = useState(0);
  return <ul className="list">{items.map((i) => <li key={i}>{i} &amp; more</li>)}</ul>;
}
