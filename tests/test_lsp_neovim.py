"""End to end in a real editor: headless Neovim (Debian's 0.7.2, or newer) attaches the server
to a Python buffer with `vim.lsp.start_client` + `vim.lsp.buf_attach_client`, runs
`astdiffuse.diffuseBlock` on two ranges (one after an emoji, so UTF-16 columns matter), lets
Neovim's own `workspace/applyEdit` handler change the buffer, writes it, and the test checks the
file changed as expected and still parses.

Skipped only when `nvim` is not installed (CI installs it: `apt-get install -y neovim`)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from engine.syntax import parses

from .lsp_support import BUFFER, LABEL_LINE, TOTAL_LINE, cursor, model_directory
from .paths import ROOT

NVIM = shutil.which("nvim")
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    NVIM is None, reason="nvim is not installed (CI installs Debian's: apt-get install -y neovim)")]

CONFIG = r"""
-- Minimal Neovim config: attach astdiffuse-lsp to the buffer, run the command, write, quit.
local cfg = vim.fn.json_decode(table.concat(vim.fn.readfile(os.getenv("ASTDIFFUSE_TEST")), "\n"))
local out = { messages = {}, progress = 0 }

local function finish(status)
  out.status = status
  vim.fn.writefile({ vim.fn.json_encode(out) }, cfg.result)
  vim.cmd("qa!")
end

local ok, err = pcall(function()
  vim.cmd("edit " .. vim.fn.fnameescape(cfg.file))
  vim.bo.filetype = "python"
  local bufnr = vim.api.nvim_get_current_buf()
  local client_id = vim.lsp.start_client({
    name = "astdiffuse",
    cmd = cfg.cmd,
    root_dir = cfg.root,
    init_options = { astdiffuse = { model = cfg.model, device = "cpu" } },
    settings = { astdiffuse = { device = "cpu" } },  -- answers workspace/configuration
    handlers = {
      ["window/showMessage"] = function(_, result)
        table.insert(out.messages, result.message)
      end,
      ["$/progress"] = function() out.progress = out.progress + 1 end,
    },
  })
  vim.lsp.buf_attach_client(bufnr, client_id)
  local client = vim.lsp.get_client_by_id(client_id)
  if not vim.wait(60000, function() return client.initialized end, 20) then
    return finish("not initialized")
  end
  local done = false
  client.request("workspace/executeCommand", {
    command = "astdiffuse.diffuseBlock",
    arguments = { { uri = vim.uri_from_bufnr(bufnr), ranges = cfg.ranges, keepAnchors = true } },
  }, function(request_err, result)
    out.error = request_err
    out.result = result
    done = true
  end, bufnr)
  if not vim.wait(120000, function() return done end, 20) then
    return finish("no answer")
  end
  vim.wait(2000, function() return vim.bo[bufnr].modified end, 20)  -- applyEdit came first
  out.modified = vim.bo[bufnr].modified
  vim.cmd("write")
  client.stop()
  vim.wait(5000, function() return client.is_stopped() end, 20)
  finish("done")
end)
if not ok then
  out.lua_error = tostring(err)
  finish("lua error")
end
"""


@pytest.fixture(scope="module")
def model_dir(request, tmp_path_factory):
    return model_directory(request, tmp_path_factory)


def test_neovim_applies_the_command_to_its_buffer(model_dir, tmp_path):
    source = tmp_path / "prices.py"
    source.write_text(BUFFER, encoding="utf-8")
    log, result = tmp_path / "server.log", tmp_path / "result.json"
    settings = {
        "file": str(source), "result": str(result), "root": str(tmp_path), "model": str(model_dir),
        "cmd": [sys.executable, "-m", "lsp_server", "--log-file", str(log)],
        "ranges": [cursor(BUFFER, TOTAL_LINE, "count"), cursor(BUFFER, LABEL_LINE, "name")],
    }
    (tmp_path / "test.json").write_text(json.dumps(settings), encoding="utf-8")
    (tmp_path / "init.lua").write_text(CONFIG, encoding="utf-8")
    env = {**os.environ, "ASTDIFFUSE_TEST": str(tmp_path / "test.json"),
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           **{f"XDG_{kind}_HOME": str(tmp_path / kind.lower())
              for kind in ("CONFIG", "DATA", "STATE", "CACHE")}}
    run = subprocess.run([NVIM, "--headless", "-n", "-i", "NONE", "-u",
                          str(tmp_path / "init.lua")], cwd=tmp_path, env=env,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
    assert result.is_file(), (f"nvim wrote no result (exit {run.returncode}):\n{run.stderr}\n"
                              f"{log.read_text() if log.is_file() else ''}")
    out = json.loads(result.read_text(encoding="utf-8"))
    server_log = log.read_text(encoding="utf-8") if log.is_file() else ""
    assert out["status"] == "done", (out, server_log[-3000:])
    assert out.get("error") is None, (out, server_log[-3000:])
    assert out["result"]["applied"] is True and out["modified"] is True
    assert out["progress"] > 0  # Neovim received work-done progress
    new = source.read_text(encoding="utf-8")
    assert new != BUFFER and parses(new, "python")
    expected = BUFFER.replace("price + count", "price * count").replace('" - name', '" + name')
    assert new == expected
