import React, { useState, type FC } from "react";
import type { Item } from "./types";

export interface Props {
  items: Item[];
  onSelect?: (item: Item) => void;
}

type Mode = "list" | "grid";

enum Color { Red, Green = 2 }

abstract class Store<T> implements Iterable<T> {
  private readonly data: Map<string, T> = new Map();
  abstract key(value: T): string;
  add(value: T): void {
    const k = this.key(value);
    if (!this.data.has(k)) {
      this.data.set(k, value);
    }
  }
  *[Symbol.iterator](): Iterator<T> {
    for (const v of this.data.values()) yield v;
  }
}

export const List: FC<Props> = ({ items, onSelect }) => {
  const [mode, setMode] = useState<Mode>("list");
  let total = 0;
  for (let i = 0; i < items.length; i++) {
    total += items[i].price ?? 0;
  }
  switch (mode) {
    case "grid":
      return <div className="grid">{total}</div>;
    default:
      break;
  }
  return (
    <ul>
      {items.map((it) => (
        <li key={it.id} onClick={() => onSelect?.(it)}>{it.name as string}</li>
      ))}
    </ul>
  );
};
