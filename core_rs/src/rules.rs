//! Rule compilation (expressions and JsonLogic) and indexed matching.
