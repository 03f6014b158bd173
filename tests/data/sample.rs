//! Crate docs.
use std::collections::{HashMap, HashSet as Set};
use crate::util::*;
extern crate serde;
mod inner;

/// A point.
#[derive(Debug, Clone)]
pub struct Point<'a> {
    pub x: i32,
    name: &'a str,
}

pub enum Shape { Circle(f64), Rect { w: f64, h: f64 } }

pub trait Area { fn area(&self) -> f64; }

impl<'a> Point<'a> {
    pub fn new(x: i32, name: &'a str) -> Self {
        Self { x, name }
    }

    async fn run(&mut self, items: Vec<String>) -> Result<u32, Error> {
        let mut total: u32 = 0;
        for (i, it) in items.iter().enumerate() {
            if it.is_empty() {
                continue;
            } else if it.len() > MAX {
                break;
            }
            total += i as u32;
            println!("{} {}", it, 'c');
        }
        let v = match total {
            0 | 1 => return Ok(0),
            n if n > 10 => n * 2,
            _ => { total -= 1; total }
        };
        if let Some(x) = self.get()? {
            self.x = x;
        }
        while total > 0 { total -= 1; }
        loop { break; }
        let s = fetch().await;
        let c = |a: u32| a + 1;
        const K: u8 = b'k';
        static NAME: &str = r"raw";
        Ok(v + c(true as u32))
    }
}
macro_rules! sq { ($e:expr) => { $e * $e }; }
